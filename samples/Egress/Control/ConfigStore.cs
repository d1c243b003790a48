using System.Globalization;
using Microsoft.Data.Sqlite;
using Netcore.Egress.Daemon;
using Netcore.Samples;

namespace Netcore.Egress.Control;

/// <summary>
/// The runtime configuration in SQLite (Microsoft.Data.Sqlite): this machine's port range and the
/// other machines (MAC, range). The daemon starts from it when it holds a range; every change (API,
/// SIGHUP, the first start's seed) replaces it in one transaction that commits only once the data
/// plane took the change.
/// </summary>
internal sealed class ConfigStore : IDisposable
{
    private readonly SqliteConnection _db;
    private readonly Lock _lock = new();

    public ConfigStore(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        Path = path;
        _db = SqliteFile.Open(path, """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS local (id INTEGER PRIMARY KEY CHECK (id = 1), first INTEGER NOT NULL, last INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS peers (mac TEXT PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL);
            """);
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>The stored range and peers, or null when nothing was stored yet.</summary>
    public (PortRange Ports, List<EgressPeer> Peers)? Load()
    {
        lock (_lock)
            return Read(_db);
    }

    /// <summary>
    /// The stored range of the file at <paramref name="path"/> without creating it (null when there
    /// is no file or no range): the range when neither the options nor the JSON file give one.
    /// </summary>
    public static PortRange? PeekPorts(string path)
    {
        if (!File.Exists(path))
            return null;
        using var db = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
        db.Open();
        try
        {
            return Read(db)?.Ports;
        }
        catch (SqliteException)
        {
            return null; // no tables yet
        }
    }

    private static (PortRange Ports, List<EgressPeer> Peers)? Read(SqliteConnection db)
    {
        using var cmd = db.CreateCommand();
        cmd.CommandText = "SELECT first, last FROM local WHERE id = 1";
        using (var r = cmd.ExecuteReader())
        {
            if (!r.Read())
                return null;
            var ports = new PortRange((ushort)r.GetInt32(0), (ushort)r.GetInt32(1));
            r.Close();
            cmd.CommandText = "SELECT mac, first, last FROM peers ORDER BY first";
            using var p = cmd.ExecuteReader();
            var peers = new List<EgressPeer>();
            while (p.Read())
                peers.Add(new EgressPeer(new PortRange((ushort)p.GetInt32(1), (ushort)p.GetInt32(2)), EgressConfig.ParseMac(p.GetString(0), "db")));
            return (ports, peers);
        }
    }

    /// <summary>
    /// Replaces the stored range and peers in one transaction; <paramref name="apply"/> runs inside it
    /// and the transaction commits only if it returns (an exception rolls the store back).
    /// </summary>
    public void Save(PortRange ports, IReadOnlyList<EgressPeer> peers, Action apply)
    {
        ArgumentNullException.ThrowIfNull(peers);
        ArgumentNullException.ThrowIfNull(apply);
        lock (_lock)
        {
            using var tx = _db.BeginTransaction();
            using (var cmd = _db.CreateCommand())
            {
                cmd.Transaction = tx;
                cmd.CommandText = "DELETE FROM peers; INSERT INTO local (id, first, last) VALUES (1, $f, $l) ON CONFLICT(id) DO UPDATE SET first = excluded.first, last = excluded.last";
                cmd.Parameters.AddWithValue("$f", (int)ports.First);
                cmd.Parameters.AddWithValue("$l", (int)ports.Last);
                cmd.ExecuteNonQuery();
            }
            foreach (var p in peers)
            {
                using var cmd = _db.CreateCommand();
                cmd.Transaction = tx;
                cmd.CommandText = "INSERT INTO peers (mac, first, last) VALUES ($m, $f, $l)";
                cmd.Parameters.AddWithValue("$m", EgressConfig.FormatMac(p.Mac));
                cmd.Parameters.AddWithValue("$f", (int)p.Ports.First);
                cmd.Parameters.AddWithValue("$l", (int)p.Ports.Last);
                cmd.ExecuteNonQuery();
            }
            apply();
            tx.Commit();
        }
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"SQLite {Path}");

    public void Dispose() => _db.Dispose();
}
