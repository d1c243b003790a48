using Microsoft.Data.Sqlite;

namespace Netcore.Samples;

/// <summary>
/// Opens the SQLite file of a sample daemon's store (compiled into the samples that keep one, from
/// samples/Shared/Sqlite): the directory is created, the connection is not pooled (the daemon holds
/// it for its lifetime) and the schema script runs (it is written with IF NOT EXISTS, so it is also
/// what an existing file goes through).
/// </summary>
internal static class SqliteFile
{
    /// <summary>Opens or creates <paramref name="path"/> and runs <paramref name="schema"/>.</summary>
    public static SqliteConnection Open(string path, string schema)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null)
            Directory.CreateDirectory(dir);
        var db = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        try
        {
            db.Open();
            Exec(db, schema);
            return db;
        }
        catch
        {
            db.Dispose();
            throw;
        }
    }

    /// <summary>Runs statements that return nothing.</summary>
    public static void Exec(SqliteConnection db, string sql)
    {
        ArgumentNullException.ThrowIfNull(db);
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }
}
