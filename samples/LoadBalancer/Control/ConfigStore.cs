using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Data.Sqlite;
using Netcore.LoadBalancer.DataPlane;
using Netcore.Samples;

namespace Netcore.LoadBalancer.Control;

/// <summary>
/// The configuration in SQLite: services (with their data-plane ids) and backends (with ids,
/// weights and drain state). Ids are stored so that a restarted daemon rebuilds exactly the same
/// rings with the same backend ids, which is what lets it adopt the pinned maps without moving a flow.
/// Every change is one transaction.
/// </summary>
internal sealed class ConfigStore : IDisposable
{
    private readonly SqliteConnection _db;
    private readonly Lock _lock = new();

    public ConfigStore(string path)
    {
        _db = SqliteFile.Open(path, """
            PRAGMA journal_mode = WAL;
            PRAGMA foreign_keys = ON;
            CREATE TABLE IF NOT EXISTS services (
                name TEXT PRIMARY KEY, id INTEGER NOT NULL UNIQUE, vip TEXT NOT NULL, port INTEGER NOT NULL,
                protocol INTEGER NOT NULL, encap INTEGER NOT NULL, gue_port INTEGER NOT NULL,
                hc_kind INTEGER, hc_port INTEGER, hc_path TEXT, hc_interval INTEGER, hc_timeout INTEGER, hc_rise INTEGER, hc_fall INTEGER);
            CREATE TABLE IF NOT EXISTS backends (
                service TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE, address TEXT NOT NULL,
                id INTEGER NOT NULL UNIQUE, weight INTEGER NOT NULL, drained INTEGER NOT NULL,
                PRIMARY KEY (service, address));
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            """);
    }

    /// <summary>Every stored service.</summary>
    public List<StoredService> LoadServices()
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "SELECT name, id, vip, port, protocol, encap, gue_port, hc_kind, hc_port, hc_path, hc_interval, hc_timeout, hc_rise, hc_fall FROM services ORDER BY name";
            using var r = cmd.ExecuteReader();
            var list = new List<StoredService>();
            while (r.Read())
            {
                HealthCheckSpec? hc = r.IsDBNull(7) ? null : new HealthCheckSpec(
                    (HealthCheckKind)r.GetInt32(7), r.GetInt32(8), r.GetString(9), r.GetInt32(10), r.GetInt32(11), r.GetInt32(12), r.GetInt32(13));
                var spec = new ServiceSpec(r.GetString(0), IPAddress.Parse(r.GetString(2)), (ushort)r.GetInt32(3), (ProtocolType)r.GetInt32(4),
                    (Encapsulation)r.GetInt32(5), (ushort)r.GetInt32(6), hc);
                list.Add(new StoredService(spec, (uint)r.GetInt64(1)));
            }
            return list;
        }
    }

    /// <summary>Every stored backend.</summary>
    public List<BackendSpec> LoadBackends()
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "SELECT service, address, id, weight, drained FROM backends ORDER BY service, address";
            using var r = cmd.ExecuteReader();
            var list = new List<BackendSpec>();
            while (r.Read())
                list.Add(new BackendSpec(r.GetString(0), IPAddress.Parse(r.GetString(1)), (uint)r.GetInt64(2), r.GetInt32(3), r.GetInt64(4) != 0));
            return list;
        }
    }

    /// <summary>Inserts or replaces a service.</summary>
    public void SaveService(ServiceSpec s, uint id)
    {
        ArgumentNullException.ThrowIfNull(s);
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = """
                INSERT INTO services (name, id, vip, port, protocol, encap, gue_port, hc_kind, hc_port, hc_path, hc_interval, hc_timeout, hc_rise, hc_fall)
                VALUES ($name, $id, $vip, $port, $proto, $encap, $gue, $k, $p, $path, $i, $t, $r, $f)
                ON CONFLICT(name) DO UPDATE SET id = excluded.id, vip = excluded.vip, port = excluded.port, protocol = excluded.protocol,
                    encap = excluded.encap, gue_port = excluded.gue_port, hc_kind = excluded.hc_kind, hc_port = excluded.hc_port,
                    hc_path = excluded.hc_path, hc_interval = excluded.hc_interval, hc_timeout = excluded.hc_timeout,
                    hc_rise = excluded.hc_rise, hc_fall = excluded.hc_fall
                """;
            var hc = s.HealthCheck;
            cmd.Parameters.AddWithValue("$name", s.Name);
            cmd.Parameters.AddWithValue("$id", (long)id);
            cmd.Parameters.AddWithValue("$vip", s.Vip.ToString());
            cmd.Parameters.AddWithValue("$port", (int)s.Port);
            cmd.Parameters.AddWithValue("$proto", (int)s.Protocol);
            cmd.Parameters.AddWithValue("$encap", (int)s.Encap);
            cmd.Parameters.AddWithValue("$gue", (int)s.GuePort);
            cmd.Parameters.AddWithValue("$k", hc is null ? DBNull.Value : (int)hc.Kind);
            cmd.Parameters.AddWithValue("$p", hc is null ? DBNull.Value : hc.Port);
            cmd.Parameters.AddWithValue("$path", hc is null ? DBNull.Value : hc.Path);
            cmd.Parameters.AddWithValue("$i", hc is null ? DBNull.Value : hc.IntervalMs);
            cmd.Parameters.AddWithValue("$t", hc is null ? DBNull.Value : hc.TimeoutMs);
            cmd.Parameters.AddWithValue("$r", hc is null ? DBNull.Value : hc.Rise);
            cmd.Parameters.AddWithValue("$f", hc is null ? DBNull.Value : hc.Fall);
            cmd.ExecuteNonQuery();
        }
    }

    /// <summary>Deletes a service and its backends.</summary>
    public void DeleteService(string name)
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "DELETE FROM services WHERE name = $name";
            cmd.Parameters.AddWithValue("$name", name);
            cmd.ExecuteNonQuery();
        }
    }

    /// <summary>Inserts or replaces a backend.</summary>
    public void SaveBackend(BackendSpec b)
    {
        ArgumentNullException.ThrowIfNull(b);
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = """
                INSERT INTO backends (service, address, id, weight, drained) VALUES ($s, $a, $id, $w, $d)
                ON CONFLICT(service, address) DO UPDATE SET id = excluded.id, weight = excluded.weight, drained = excluded.drained
                """;
            cmd.Parameters.AddWithValue("$s", b.Service);
            cmd.Parameters.AddWithValue("$a", b.Address.ToString());
            cmd.Parameters.AddWithValue("$id", (long)b.Id);
            cmd.Parameters.AddWithValue("$w", b.Weight);
            cmd.Parameters.AddWithValue("$d", b.Drained ? 1 : 0);
            cmd.ExecuteNonQuery();
        }
    }

    /// <summary>Deletes a backend.</summary>
    public void DeleteBackend(string service, IPAddress address)
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "DELETE FROM backends WHERE service = $s AND address = $a";
            cmd.Parameters.AddWithValue("$s", service);
            cmd.Parameters.AddWithValue("$a", address.ToString());
            cmd.ExecuteNonQuery();
        }
    }

    /// <summary>A stored counter (the backend id allocator's cursor), or <paramref name="fallback"/>.</summary>
    public long GetMeta(string key, long fallback)
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "SELECT value FROM meta WHERE key = $k";
            cmd.Parameters.AddWithValue("$k", key);
            object? v = cmd.ExecuteScalar();
            return v is null or DBNull ? fallback : Convert.ToInt64(v, CultureInfo.InvariantCulture);
        }
    }

    /// <summary>Stores a counter.</summary>
    public void SetMeta(string key, long value)
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "INSERT INTO meta (key, value) VALUES ($k, $v) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
            cmd.Parameters.AddWithValue("$k", key);
            cmd.Parameters.AddWithValue("$v", value);
            cmd.ExecuteNonQuery();
        }
    }

    private void Exec(string sql) => SqliteFile.Exec(_db, sql);

    public void Dispose() => _db.Dispose();
}
