using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Netcore.Benchmarks.Bgp;

/// <summary>
/// The feeder and sink peers of benchmarks/compare/bgp-fulltable.sh, in one process so both ends
/// share one clock. Each is a raw BGP session over TCP written for the benchmark (not our speaker):
/// OPEN (4-octet AS, IPv4 and IPv6 unicast, no extended messages, no graceful restart), KEEPALIVE on
/// both sessions every hold/3 for the whole run, and a reader that records every message. The feeder
/// replays a table pre-encoded with our codec (<see cref="FullTableGenerator"/>) and then the two
/// End-of-RIB markers; the sink counts the prefixes per family it receives from the speaker under test.
/// </summary>
internal static class FullTableDriver
{
    private const int Header = 19;

    /// <summary>
    /// <c>bgp-fulltable-driver --speaker IP --feeder IP --sink IP [--speaker-as 65002] [--feeder-as 65001]
    /// [--sink-as 65003] [--v4 N] [--v6 N] [--seed S] [--hold S] [--pid PID] [--timeout S] [--cache FILE]</c>.
    /// Prints one line <c>RESULT key=value ...</c>; exit code 0 only when every prefix arrived, no
    /// NOTIFICATION came and keepalives kept flowing on both sessions.
    /// </summary>
    [Tool("bgp-fulltable-driver", "feeder + sink peers for benchmarks/compare/bgp-fulltable.sh")]
    internal static int Run(string[] args)
    {
        var o = Args.Parse(args);
        var speaker = IPAddress.Parse(o.Get("speaker", "10.0.0.2"));
        var feederAddr = IPAddress.Parse(o.Get("feeder", "10.0.0.1"));
        var sinkAddr = IPAddress.Parse(o.Get("sink", "10.0.0.3"));
        uint speakerAs = o.GetUInt("speaker-as", 65002), feederAs = o.GetUInt("feeder-as", 65001), sinkAs = o.GetUInt("sink-as", 65003);
        int v4 = (int)o.GetUInt("v4", 1_050_000), v6 = (int)o.GetUInt("v6", 240_000), seed = (int)o.GetUInt("seed", 42);
        int hold = (int)o.GetUInt("hold", 9);
        int pid = (int)o.GetUInt("pid", 0);
        double timeout = o.GetUInt("timeout", 900);
        string? cache = o.Find("cache");

        var sw = Stopwatch.StartNew();
        var (updates, messages) = LoadOrBuild(cache, v4, v6, feederAs, seed);
        Console.WriteLine($"table: {v4} IPv4 + {v6} IPv6 prefixes in {messages} UPDATEs ({updates.Length / 1048576.0:F1} MiB), ready in {sw.Elapsed.TotalSeconds:F1} s");
        for (int p = 0, n = 0; p < updates.Length; n++)
        {
            int len = BinaryPrimitives.ReadUInt16BigEndian(updates.AsSpan(p + 16));
            if (len < Header || p + len > updates.Length || updates[p + 18] != 2)
                throw new InvalidOperationException($"the encoded table is broken at message {n}, offset {p} (length {len})");
            p += len;
        }
        if (o.Find("check-only") is not null)
            return 0;

        using var sink = Session.Connect(sinkAddr, speaker, sinkAs, speakerAs, hold, "sink", timeout: 120);
        using var feeder = Session.Connect(feederAddr, speaker, feederAs, speakerAs, hold, "feeder", timeout: 120);
        Console.WriteLine($"sessions established (hold {sink.HoldSeconds} s / {feeder.HoldSeconds} s)");
        sink.StartReader(counting: true, expectV4: v4, expectV6: v6);
        feeder.StartReader(counting: false, 0, 0);
        // One keepalive thread per session (not the thread pool: a feeder send blocked by TCP back-pressure
        // must not hold up the sink's keepalives, and blocked pool threads would starve the timers).
        sink.StartKeepalives();
        feeder.StartKeepalives();
        Thread.Sleep(1000); // let the speaker finish what it does right after Established

        long cpu0 = CpuTicks(pid);
        long t0 = Stopwatch.GetTimestamp();
        feeder.MarkRunStart(t0);
        sink.MarkRunStart(t0);
        feeder.SendAll(updates);
        long tSent = Stopwatch.GetTimestamp();
        feeder.SendAll(EndOfRib(false));
        feeder.SendAll(EndOfRib(true));

        bool complete = false;
        for (double waited = 0; !complete && waited < timeout && !sink.Failed && !feeder.Failed; waited += 1)
        {
            complete = sink.Complete.Wait(TimeSpan.FromSeconds(Math.Min(1, timeout - waited)));
            if (!complete && (int)waited % 10 == 9)
                Console.Error.WriteLine($"  ... {waited + 1:F0} s: sink has {sink.V4} IPv4 + {sink.V6} IPv6 prefixes");
        }
        long tLast = complete ? sink.LastPrefixAt : Stopwatch.GetTimestamp();
        long cpu1 = CpuTicks(pid);
        // Keep both sessions open for at least one more keepalive interval, so keepalives are seen
        // after the flood as well as during it.
        double kaInterval = Math.Max(1, Math.Min(sink.HoldSeconds, feeder.HoldSeconds) / 3.0);
        long tEnd = Math.Max(tLast, t0) + (long)((kaInterval * 1.5 + 0.5) * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < tEnd && !sink.Failed && !feeder.Failed)
            Thread.Sleep(50);
        long hwm = HighWaterKb(pid);

        double secs(long a, long b) => (b - a) / (double)Stopwatch.Frequency;
        double clk = 100.0;
        var problems = new List<string>();
        if (!complete) problems.Add($"only {sink.V4} IPv4 / {sink.V6} IPv6 of {v4} / {v6} prefixes arrived within {timeout} s");
        foreach (var s in new[] { feeder, sink })
        {
            if (s.Notification is { } n) problems.Add($"{s.Name}: NOTIFICATION received: {n}");
            if (s.Closed is { } c) problems.Add($"{s.Name}: session closed: {c}");
            var (count, gap) = s.KeepaliveStats(t0, tEnd);
            if (count == 0) problems.Add($"{s.Name}: no KEEPALIVE received between the first UPDATE and the end of the run");
            if (gap >= s.HoldSeconds) problems.Add($"{s.Name}: {gap:F1} s without any message from the speaker (hold time {s.HoldSeconds} s)");
        }
        if (sink.Withdrawn > 0) problems.Add($"sink: {sink.Withdrawn} withdrawals received");
        var (kaF, gapF) = feeder.KeepaliveStats(t0, tEnd);
        var (kaS, gapS) = sink.KeepaliveStats(t0, tEnd);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"RESULT time={secs(t0, tLast):F3} cpu={(cpu1 - cpu0) / clk:F2} hwm_kb={hwm} v4={sink.V4} v6={sink.V6} sent={secs(t0, tSent):F3} " +
            $"first_at_sink={(sink.FirstPrefixAt == 0 ? -1 : secs(t0, sink.FirstPrefixAt)):F3} ka_feeder={kaF} ka_sink={kaS} maxgap_feeder={gapF:F1} maxgap_sink={gapS:F1} " +
            $"ka_sent={feeder.KeepalivesSent + sink.KeepalivesSent} sink_updates={sink.Updates} ok={(problems.Count == 0 ? 1 : 0)}"));
        foreach (var p in problems) Console.Error.WriteLine("bgp-fulltable-driver: FAIL: " + p);
        return problems.Count == 0 ? 0 : 1;
    }

    private static (byte[] Updates, int Messages) LoadOrBuild(string? cache, int v4, int v6, uint feederAs, int seed)
    {
        string key = $"v4={v4} v6={v6} as={feederAs} seed={seed} format=1";
        if (cache is not null && File.Exists(cache) && File.Exists(cache + ".key") && File.ReadAllText(cache + ".key") == key)
        {
            byte[] data = File.ReadAllBytes(cache);
            int n = 0;
            for (int p = 0; p < data.Length; p += BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(p + 16))) n++;
            return (data, n);
        }
        var t = FullTableGenerator.Build(v4, v6, feederAs, seed);
        if (cache is not null)
        {
            File.WriteAllBytes(cache, t.Updates);
            File.WriteAllText(cache + ".key", key);
        }
        return (t.Updates, t.Messages);
    }

    private static byte[] EndOfRib(bool v6)
    {
        byte[] b = new byte[64];
        int n = Netcore.Bgp.Messages.UpdateCodec.WriteEndOfRib(b, v6 ? Netcore.Bgp.BgpFamily.IPv6Unicast : Netcore.Bgp.BgpFamily.IPv4Unicast);
        return b[..n];
    }

    /// <summary>utime + stime of a process in clock ticks (USER_HZ, 100 on Linux), or 0.</summary>
    internal static long CpuTicks(int pid)
    {
        if (pid <= 0) return 0;
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            string[] f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // Fields after "(comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12.
            return long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>VmHWM (peak resident set) of a process in KiB, or 0.</summary>
    internal static long HighWaterKb(int pid)
    {
        if (pid <= 0) return 0;
        foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
        return 0;
    }

    /// <summary>One raw BGP session (active side).</summary>
    private sealed class Session : IDisposable
    {
        private readonly Socket _socket;
        private readonly Lock _sendLock = new();
        private readonly List<(long At, byte Type)> _received = [];
        private long _lastSentMs;
        private long _runStart;
        private int _expectV4, _expectV6;
        private byte[] _leftover = [];
        private volatile bool _disposed;

        private Session(Socket s, string name, int hold)
        {
            _socket = s;
            Name = name;
            HoldSeconds = hold;
        }

        public string Name { get; }
        public int HoldSeconds { get; private set; }
        public int V4, V6, Withdrawn, KeepalivesSent, Updates;
        public long FirstPrefixAt, LastPrefixAt;
        public string? Notification;
        public string? Closed;
        public ManualResetEventSlim Complete { get; } = new();
        public bool Failed => Notification is not null || Closed is not null;

        public static Session Connect(IPAddress local, IPAddress remote, uint myAs, uint peerAs, int hold, string name, int timeout)
        {
            var deadline = DateTime.UtcNow.AddSeconds(timeout);
            while (true)
            {
                var s = new Socket(remote.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                    s.Bind(new IPEndPoint(local, 0));
                    s.Connect(new IPEndPoint(remote, 179));
                    var session = new Session(s, name, hold);
                    session.Open(local, myAs, peerAs, hold);
                    return session;
                }
                catch (Exception e) when (e is SocketException or IOException && DateTime.UtcNow < deadline)
                {
                    s.Dispose();
                    Thread.Sleep(500);
                }
            }
        }

        private void Open(IPAddress id, uint myAs, uint peerAs, int hold)
        {
            // RFC 4271 4.2 OPEN with capabilities (RFC 5492): MP IPv4/IPv6 unicast (RFC 4760), route refresh (RFC 2918), 4-octet AS (RFC 6793).
            byte[] caps =
            [
                1, 4, 0, 1, 0, 1,
                1, 4, 0, 2, 0, 1,
                2, 0,
                65, 4, (byte)(myAs >> 24), (byte)(myAs >> 16), (byte)(myAs >> 8), (byte)myAs,
            ];
            int len = Header + 10 + 2 + caps.Length;
            byte[] m = new byte[len];
            WriteHeader(m, 1);
            m[Header] = 4;
            BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(Header + 1), myAs > ushort.MaxValue ? (ushort)23456 : (ushort)myAs);
            BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(Header + 3), (ushort)hold);
            id.TryWriteBytes(m.AsSpan(Header + 5), out _);
            m[Header + 9] = (byte)(2 + caps.Length);
            m[Header + 10] = 2;
            m[Header + 11] = (byte)caps.Length;
            caps.CopyTo(m, Header + 12);
            _socket.Send(m);
            var buf = new byte[65536];
            int have = 0;
            bool gotOpen = false;
            _socket.ReceiveTimeout = 30_000;
            while (true)
            {
                var (type, body) = ReadOne(buf, ref have);
                if (type == 1)
                {
                    int theirHold = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(3));
                    HoldSeconds = Math.Min(hold, theirHold);
                    uint theirAs = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(1));
                    if (theirAs != peerAs && theirAs != 23456)
                        throw new InvalidOperationException($"{Name}: speaker says AS {theirAs}, expected {peerAs}");
                    gotOpen = true;
                    SendKeepalive();
                }
                else if (type == 4 && gotOpen)
                {
                    break;
                }
                else if (type == 3)
                {
                    throw new InvalidOperationException($"{Name}: NOTIFICATION during OPEN: {Convert.ToHexString(body)}");
                }
            }
            _socket.ReceiveTimeout = 0;
            _leftover = buf[..have];
        }

        private (byte Type, byte[] Body) ReadOne(byte[] buf, ref int have)
        {
            while (true)
            {
                if (have >= Header)
                {
                    int len = BinaryPrimitives.ReadUInt16BigEndian(buf.AsSpan(16));
                    if (have >= len)
                    {
                        byte type = buf[18];
                        byte[] body = buf[Header..len];
                        Buffer.BlockCopy(buf, len, buf, 0, have - len);
                        have -= len;
                        return (type, body);
                    }
                }
                int n = _socket.Receive(buf, have, buf.Length - have, SocketFlags.None);
                if (n == 0) throw new IOException($"{Name}: connection closed during OPEN");
                have += n;
            }
        }

        public void MarkRunStart(long t) => Volatile.Write(ref _runStart, t);

        public void StartReader(bool counting, int expectV4, int expectV6)
        {
            _expectV4 = expectV4;
            _expectV6 = expectV6;
            var t = new Thread(() => ReadLoop(counting)) { IsBackground = true, Name = Name + " reader" };
            t.Start();
        }

        private void ReadLoop(bool counting)
        {
            byte[] buf = new byte[1 << 20];
            _leftover.CopyTo(buf, 0);
            int have = _leftover.Length;
            bool pending = have > 0; // bytes that arrived with the last OPEN-phase read
            try
            {
                while (true)
                {
                    int n = pending ? -1 : _socket.Receive(buf, have, buf.Length - have, SocketFlags.None);
                    pending = false;
                    if (n == 0)
                    {
                        Closed = "connection closed by the speaker";
                        return;
                    }
                    if (n > 0) have += n;
                    long now = Stopwatch.GetTimestamp();
                    int p = 0;
                    while (have - p >= Header)
                    {
                        int len = BinaryPrimitives.ReadUInt16BigEndian(buf.AsSpan(p + 16));
                        if (len < Header) { Closed = "bad message length"; return; }
                        if (have - p < len) break;
                        byte type = buf[p + 18];
                        lock (_received) _received.Add((now, type));
                        if (type == 2 && counting)
                            Count(buf.AsSpan(p + Header, len - Header), now);
                        else if (type == 3)
                            Notification = DescribeNotification(buf.AsSpan(p + Header, len - Header));
                        p += len;
                    }
                    Buffer.BlockCopy(buf, p, buf, 0, have - p);
                    have -= p;
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                Closed ??= "socket error: " + e.Message;
            }
        }

        private static string DescribeNotification(ReadOnlySpan<byte> b) =>
            b.Length >= 2 ? $"code {b[0]} subcode {b[1]} data {Convert.ToHexString(b[2..])}" : Convert.ToHexString(b);

        private void Count(ReadOnlySpan<byte> body, long now)
        {
            Updates++;
            int wlen = BinaryPrimitives.ReadUInt16BigEndian(body);
            Withdrawn += CountPrefixes(body.Slice(2, wlen));
            int alen = BinaryPrimitives.ReadUInt16BigEndian(body[(2 + wlen)..]);
            var attrs = body.Slice(4 + wlen, alen);
            int v4 = CountPrefixes(body[(4 + wlen + alen)..]), v6 = 0;
            while (attrs.Length >= 3)
            {
                byte flags = attrs[0], code = attrs[1];
                int hdr = (flags & 0x10) != 0 ? 4 : 3;
                int l = hdr == 4 ? BinaryPrimitives.ReadUInt16BigEndian(attrs[2..]) : attrs[2];
                var v = attrs.Slice(hdr, l);
                if (code == 14)
                {
                    // RFC 4760 3: AFI(2) SAFI(1) next hop length(1) next hop, reserved(1), NLRI.
                    int nh = v[3];
                    int c = CountPrefixes(v[(5 + nh)..]);
                    if (BinaryPrimitives.ReadUInt16BigEndian(v) == 2) v6 += c; else v4 += c;
                }
                else if (code == 15)
                {
                    Withdrawn += CountPrefixes(v[3..]);
                }
                attrs = attrs[(hdr + l)..];
            }
            if (v4 + v6 == 0) return;
            if (FirstPrefixAt == 0) FirstPrefixAt = now;
            V4 += v4;
            V6 += v6;
            LastPrefixAt = now;
            if (V4 >= _expectV4 && V6 >= _expectV6)
                Complete.Set();
        }

        private static int CountPrefixes(ReadOnlySpan<byte> d)
        {
            int n = 0;
            while (d.Length > 0)
            {
                d = d[(1 + ((d[0] + 7) >> 3))..];
                n++;
            }
            return n;
        }

        /// <summary>KEEPALIVEs received in [from, to] and the longest silence (any message) in that window, in seconds.</summary>
        public (int Keepalives, double MaxGap) KeepaliveStats(long from, long to)
        {
            lock (_received)
            {
                int n = 0;
                long last = from;
                long gap = 0;
                foreach (var (at, type) in _received)
                {
                    if (at < from || at > to) continue;
                    if (type == 4) n++;
                    gap = Math.Max(gap, at - last);
                    last = at;
                }
                gap = Math.Max(gap, to - last);
                return (n, gap / (double)Stopwatch.Frequency);
            }
        }

        public void StartKeepalives()
        {
            var t = new Thread(() =>
            {
                while (Closed is null && !_disposed)
                {
                    Thread.Sleep(100);
                    if (Environment.TickCount64 - Volatile.Read(ref _lastSentMs) < HoldSeconds * 1000 / 3) continue;
                    try { SendKeepalive(); }
                    catch (Exception e) when (e is SocketException or ObjectDisposedException) { Closed ??= "send failed: " + e.Message; }
                }
            }) { IsBackground = true, Name = Name + " keepalives" };
            t.Start();
        }

        private void SendKeepalive()
        {
            byte[] m = new byte[Header];
            WriteHeader(m, 4);
            lock (_sendLock)
            {
                _socket.Send(m);
                Volatile.Write(ref _lastSentMs, Environment.TickCount64);
                if (Volatile.Read(ref _runStart) != 0) KeepalivesSent++;
            }
        }

        /// <summary>Sends back-to-back messages in chunks of at most 64 KiB cut at message boundaries, so keepalives can go in between.</summary>
        public void SendAll(byte[] data)
        {
            int p = 0;
            while (p < data.Length)
            {
                int end = p;
                while (end < data.Length && end - p < 65536)
                {
                    int len = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(end + 16));
                    if (end + len - p > 65536 && end > p) break;
                    end += len;
                }
                lock (_sendLock)
                {
                    int sent = 0;
                    while (sent < end - p)
                        sent += _socket.Send(data, p + sent, end - p - sent, SocketFlags.None);
                }
                p = end;
            }
        }

        private static void WriteHeader(byte[] m, byte type)
        {
            m.AsSpan(0, 16).Fill(0xFF);
            BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(16), (ushort)m.Length);
            m[18] = type;
        }

        public void Dispose()
        {
            _disposed = true;
            try { _socket.Shutdown(SocketShutdown.Both); }
            catch (SocketException) { }
            _socket.Dispose();
            Complete.Dispose();
        }
    }
}

/// <summary>Tiny "--name value" argument parser for the benchmark tools.</summary>
internal sealed class Args
{
    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);

    public static Args Parse(string[] args)
    {
        var a = new Args();
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal))
                throw new ArgumentException($"unexpected argument '{args[i]}'");
            string name = args[i][2..];
            string value = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "true";
            if (!a._values.TryGetValue(name, out var list)) a._values[name] = list = [];
            list.Add(value);
        }
        return a;
    }

    public string? Find(string name) => _values.TryGetValue(name, out var v) ? v[^1] : null;

    public IReadOnlyList<string> All(string name) => _values.TryGetValue(name, out var v) ? v : [];

    public string Get(string name, string fallback) => Find(name) ?? fallback;

    public uint GetUInt(string name, uint fallback) => Find(name) is { } s ? uint.Parse(s, CultureInfo.InvariantCulture) : fallback;
}
