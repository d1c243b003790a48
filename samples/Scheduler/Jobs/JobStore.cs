using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Netcore.Samples;

namespace Netcore.Scheduler.Jobs;

/// <summary>
/// Tenants and jobs in SQLite (WAL). Function images are stored once per SHA-256 (many jobs share an
/// image). Every state change is one statement, written before the scheduler acts on it, so after a
/// crash or restart the store says exactly which jobs were queued and which were running.
/// The file uses incremental auto-vacuum: pruning frees pages and <see cref="Prune"/> hands them back
/// to the file system with <c>PRAGMA incremental_vacuum</c>, without the full rewrite of VACUUM.
/// </summary>
internal sealed class JobStore : IDisposable
{
    private readonly SqliteConnection _db;
    private readonly Lock _lock = new();
    private readonly string _path;

    public JobStore(string path)
    {
        _path = path;
        // auto_vacuum must be set before the first table is made (sqlite.org/pragma.html#pragma_auto_vacuum);
        // a file made before this setting existed is converted once, below, by a VACUUM.
        _db = SqliteFile.Open(path, """
            PRAGMA auto_vacuum = INCREMENTAL;
            PRAGMA journal_mode = WAL;
            PRAGMA synchronous = NORMAL;
            CREATE TABLE IF NOT EXISTS tenants (
                name TEXT PRIMARY KEY, weight INTEGER NOT NULL, cpu_limit REAL, memory_limit INTEGER, max_workers INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS images (sha256 TEXT PRIMARY KEY, bytes BLOB NOT NULL, last_used INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS jobs (
                id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, kind INTEGER NOT NULL, priority INTEGER NOT NULL,
                image TEXT, input BLOB NOT NULL, timeout_ms INTEGER NOT NULL, memory_mb INTEGER NOT NULL, linux TEXT,
                state INTEGER NOT NULL, reason TEXT, result INTEGER, output BLOB, submitted INTEGER NOT NULL,
                started INTEGER, finished INTEGER, attempts INTEGER NOT NULL, cold INTEGER, guest_ms REAL, worker_pid INTEGER);
            CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
            """);
        try
        {
            if (Scalar("PRAGMA auto_vacuum") != 2)
            {
                // A file from before incremental vacuum: "auto-vacuum can be turned on for an existing
                // database by setting the pragma and then running VACUUM" (one rewrite, at start).
                Exec("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;");
            }
            if (!ColumnExists("images", "last_used"))
                Exec("ALTER TABLE images ADD COLUMN last_used INTEGER NOT NULL DEFAULT 0"); // older images count as long unused
        }
        catch
        {
            _db.Dispose();
            throw;
        }
    }

    private long Scalar(string sql)
    {
        using var cmd = _db.CreateCommand();
        cmd.CommandText = sql;
        return (long)cmd.ExecuteScalar()!;
    }

    private bool ColumnExists(string table, string column)
    {
        using var cmd = _db.CreateCommand();
        cmd.CommandText = $"SELECT count(*) FROM pragma_table_info('{table}') WHERE name = $c";
        cmd.Parameters.AddWithValue("$c", column);
        return (long)cmd.ExecuteScalar()! > 0;
    }

    private void Exec(string sql) => SqliteFile.Exec(_db, sql);

    public List<TenantSpec> LoadTenants()
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "SELECT name, weight, cpu_limit, memory_limit, max_workers FROM tenants ORDER BY name";
            using var r = cmd.ExecuteReader();
            var list = new List<TenantSpec>();
            while (r.Read())
                list.Add(new TenantSpec(r.GetString(0), r.GetInt32(1), r.IsDBNull(2) ? null : r.GetDouble(2), r.IsDBNull(3) ? null : r.GetInt64(3), r.GetInt32(4)));
            return list;
        }
    }

    public void SaveTenant(TenantSpec t)
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "INSERT OR REPLACE INTO tenants (name, weight, cpu_limit, memory_limit, max_workers) VALUES ($n, $w, $c, $m, $x)";
            cmd.Parameters.AddWithValue("$n", t.Name);
            cmd.Parameters.AddWithValue("$w", t.Weight);
            cmd.Parameters.AddWithValue("$c", (object?)t.CpuLimit ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$m", (object?)t.MemoryLimitBytes ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$x", t.MaxWorkers);
            cmd.ExecuteNonQuery();
        }
    }

    /// <summary>Stores a new job (state Queued) and returns its id.</summary>
    public long Insert(JobRecord job)
    {
        lock (_lock)
        {
            using var tx = _db.BeginTransaction();
            string? hash = null;
            if (job.Spec.Image is { } image)
            {
                hash = Convert.ToHexString(SHA256.HashData(image));
                using var img = _db.CreateCommand();
                img.Transaction = tx;
                // last_used is what image retention measures from: every submission refreshes it.
                img.CommandText = "INSERT INTO images (sha256, bytes, last_used) VALUES ($h, $b, $u) ON CONFLICT (sha256) DO UPDATE SET last_used = excluded.last_used";
                img.Parameters.AddWithValue("$h", hash);
                img.Parameters.AddWithValue("$b", image);
                img.Parameters.AddWithValue("$u", Us(job.SubmittedAt));
                img.ExecuteNonQuery();
            }
            using var cmd = _db.CreateCommand();
            cmd.Transaction = tx;
            cmd.CommandText = """
                INSERT INTO jobs (tenant, kind, priority, image, input, timeout_ms, memory_mb, linux, state, submitted, attempts)
                VALUES ($t, $k, $p, $i, $in, $to, $m, $l, $s, $sub, 0) RETURNING id
                """;
            cmd.Parameters.AddWithValue("$t", job.Spec.Tenant);
            cmd.Parameters.AddWithValue("$k", (int)job.Spec.Kind);
            cmd.Parameters.AddWithValue("$p", job.Spec.Priority);
            cmd.Parameters.AddWithValue("$i", (object?)hash ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$in", job.Spec.Input);
            cmd.Parameters.AddWithValue("$to", job.Spec.TimeoutMs);
            cmd.Parameters.AddWithValue("$m", job.Spec.MemoryMb);
            cmd.Parameters.AddWithValue("$l", job.Spec.Linux is null ? DBNull.Value : JsonSerializer.Serialize(job.Spec.Linux));
            cmd.Parameters.AddWithValue("$s", (int)job.State);
            cmd.Parameters.AddWithValue("$sub", Us(job.SubmittedAt));
            long id = (long)cmd.ExecuteScalar()!;
            tx.Commit();
            return id;
        }
    }

    /// <summary>Writes the job's state and results.</summary>
    public void Update(JobRecord job)
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = """
                UPDATE jobs SET state = $s, reason = $r, result = $res, output = $o, started = $st, finished = $f,
                    attempts = $a, cold = $c, guest_ms = $g, worker_pid = $w WHERE id = $id
                """;
            cmd.Parameters.AddWithValue("$id", job.Id);
            cmd.Parameters.AddWithValue("$s", (int)job.State);
            cmd.Parameters.AddWithValue("$r", (object?)job.Reason ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$res", job.Result is ulong u ? unchecked((long)u) : DBNull.Value);
            cmd.Parameters.AddWithValue("$o", (object?)job.Output ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$st", job.StartedAt is { } s ? Us(s) : DBNull.Value);
            cmd.Parameters.AddWithValue("$f", job.FinishedAt is { } f ? Us(f) : DBNull.Value);
            cmd.Parameters.AddWithValue("$a", job.Attempts);
            cmd.Parameters.AddWithValue("$c", job.Cold is bool c ? (c ? 1 : 0) : DBNull.Value);
            cmd.Parameters.AddWithValue("$g", (object?)job.GuestMs ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$w", (object?)job.WorkerPid ?? DBNull.Value);
            cmd.ExecuteNonQuery();
        }
    }

    private const string Columns = """
        j.id, j.tenant, j.kind, j.priority, i.bytes, j.input, j.timeout_ms, j.memory_mb, j.linux, j.state, j.reason, j.result,
        j.output, j.submitted, j.started, j.finished, j.attempts, j.cold, j.guest_ms, j.worker_pid
        FROM jobs j LEFT JOIN images i ON i.sha256 = j.image
        """;

    public JobRecord? Get(long id)
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = $"SELECT {Columns} WHERE j.id = $id";
            cmd.Parameters.AddWithValue("$id", id);
            using var r = cmd.ExecuteReader();
            return r.Read() ? Read(r) : null;
        }
    }

    /// <summary>Jobs in <paramref name="states"/> (all when empty), optionally of one tenant, newest first, at most <paramref name="limit"/>.</summary>
    public List<JobRecord> List(string? tenant, IReadOnlyCollection<JobState> states, int limit, bool oldestFirst = false)
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            string where = "1 = 1";
            if (tenant is not null)
            {
                where += " AND j.tenant = $t";
                cmd.Parameters.AddWithValue("$t", tenant);
            }
            if (states.Count > 0)
                where += $" AND j.state IN ({string.Join(',', states.Select(s => ((int)s).ToString(System.Globalization.CultureInfo.InvariantCulture)))})";
            cmd.CommandText = $"SELECT {Columns} WHERE {where} ORDER BY j.id {(oldestFirst ? "ASC" : "DESC")} LIMIT $lim";
            cmd.Parameters.AddWithValue("$lim", limit);
            using var r = cmd.ExecuteReader();
            var list = new List<JobRecord>();
            while (r.Read())
                list.Add(Read(r));
            return list;
        }
    }

    private static JobRecord Read(SqliteDataReader r)
    {
        static DateTimeOffset? Time(SqliteDataReader r, int i) => r.IsDBNull(i) ? null : DateTimeOffset.UnixEpoch.AddTicks(r.GetInt64(i) * 10);
        var spec = new JobSpec(r.GetString(1), (JobKind)r.GetInt32(2), r.GetInt32(3), r.IsDBNull(4) ? null : (byte[])r[4], (byte[])r[5],
            r.GetInt32(6), r.GetInt32(7), r.IsDBNull(8) ? null : JsonSerializer.Deserialize<LinuxSpec>(r.GetString(8)));
        return new JobRecord
        {
            Id = r.GetInt64(0),
            Spec = spec,
            State = (JobState)r.GetInt32(9),
            Reason = r.IsDBNull(10) ? null : r.GetString(10),
            Result = r.IsDBNull(11) ? null : unchecked((ulong)r.GetInt64(11)),
            Output = r.IsDBNull(12) ? null : (byte[])r[12],
            SubmittedAt = Time(r, 13)!.Value,
            StartedAt = Time(r, 14),
            FinishedAt = Time(r, 15),
            Attempts = r.GetInt32(16),
            Cold = r.IsDBNull(17) ? null : r.GetInt64(17) != 0,
            GuestMs = r.IsDBNull(18) ? null : r.GetDouble(18),
            WorkerPid = r.IsDBNull(19) ? null : r.GetInt32(19),
        };
    }

    /// <summary>
    /// Deletes a tenant whose jobs have all ended. Its jobs stay (queryable by id and tenant name until
    /// pruned); throws when one is still queued or running.
    /// </summary>
    public void DeleteTenant(string name)
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = $"""
                DELETE FROM tenants WHERE name = $t RETURNING (SELECT count(*) FROM jobs WHERE tenant = $t AND state IN ({Unfinished}))
                """;
            cmd.Parameters.AddWithValue("$t", name);
            if (cmd.ExecuteScalar() is long unfinished && unfinished != 0)
                throw new InvalidOperationException($"tenant {name} was deleted with {unfinished} queued or running jobs in the store");
        }
    }

    /// <summary>Queued and Running as SQL: the states pruning never touches.</summary>
    private static readonly string Unfinished = $"{(int)JobState.Queued}, {(int)JobState.Running}";

    /// <summary>
    /// Deletes finished jobs that ended before <paramref name="jobsFinishedBefore"/> or are beyond the
    /// newest <paramref name="keepJobs"/> finished ones, and images no queued or running job refers to
    /// that were last submitted before <paramref name="imagesUnusedSince"/>; then returns the freed pages
    /// to the file system (incremental vacuum, and a WAL checkpoint so the main file is truncated).
    /// Queued and running jobs are never deleted, whatever their age.
    /// </summary>
    public PruneResult Prune(DateTimeOffset? jobsFinishedBefore, int? keepJobs, DateTimeOffset? imagesUnusedSince)
    {
        lock (_lock)
        {
            long before = FileBytes();
            int jobs = 0, images = 0;
            using (var tx = _db.BeginTransaction())
            {
                if (jobsFinishedBefore is { } cut)
                {
                    using var cmd = _db.CreateCommand();
                    cmd.Transaction = tx;
                    cmd.CommandText = $"DELETE FROM jobs WHERE state NOT IN ({Unfinished}) AND finished < $cut";
                    cmd.Parameters.AddWithValue("$cut", Us(cut));
                    jobs += cmd.ExecuteNonQuery();
                }
                if (keepJobs is int keep)
                {
                    using var cmd = _db.CreateCommand();
                    cmd.Transaction = tx;
                    cmd.CommandText = $"""
                        DELETE FROM jobs WHERE state NOT IN ({Unfinished}) AND id NOT IN (
                            SELECT id FROM jobs WHERE state NOT IN ({Unfinished}) ORDER BY finished DESC, id DESC LIMIT $keep)
                        """;
                    cmd.Parameters.AddWithValue("$keep", keep);
                    jobs += cmd.ExecuteNonQuery();
                }
                if (imagesUnusedSince is { } since)
                {
                    using var cmd = _db.CreateCommand();
                    cmd.Transaction = tx;
                    cmd.CommandText = $"""
                        DELETE FROM images WHERE last_used < $since
                            AND sha256 NOT IN (SELECT image FROM jobs WHERE state IN ({Unfinished}) AND image IS NOT NULL)
                        """;
                    cmd.Parameters.AddWithValue("$since", Us(since));
                    images = cmd.ExecuteNonQuery();
                }
                tx.Commit();
            }
            long freePages = Scalar("PRAGMA freelist_count");
            // Moves the free pages to the end of the file and truncates it; the WAL checkpoint then
            // writes the shorter file and empties the log (sqlite.org/pragma.html#pragma_incremental_vacuum).
            Exec("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);");
            return new PruneResult(jobs, images, freePages * Scalar("PRAGMA page_size"), before, FileBytes());
        }
    }

    private long FileBytes()
    {
        return new[] { _path, _path + "-wal" }.Sum(f => File.Exists(f) ? new FileInfo(f).Length : 0);
    }

    /// <summary>Times are stored as microseconds since the Unix epoch (run times of warm jobs are a few ms).</summary>
    private static long Us(DateTimeOffset t) => (t - DateTimeOffset.UnixEpoch).Ticks / 10;

    public void Dispose() => _db.Dispose();
}
