using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Netcore.LoadBalancer.DataPlane;
using Netcore.LoadBalancer.Maglev;
using Netcore.Xdp;

namespace Netcore.LoadBalancer.Bench;

/// <summary>
/// <c>xdp-bench</c>, the measuring half of benchmarks/compare/lb-xdp.sh: per-packet cost of
/// lb_bench.o under BPF_PROG_TEST_RUN against a program that only returns XDP_TX (the floor),
/// everything loaded and configured through Netcore.Xdp and the daemon's own
/// <see cref="XdpDataPlane"/>; then the Maglev build time. The script's header says what each
/// figure means. Prints lines starting with <c>lb-xdp:</c>, the last one
/// <c>lb-xdp: packet lb/floor = X; build ms = B</c>. With <c>--baseline OBJ</c> (an lb_bench.o
/// of another build, same map layout) that object is measured in the same rounds too, for an A/B
/// comparison that the host's swings weigh on alike.
/// </summary>
internal static class XdpBench
{
    private const int Backends = 100;
    private const uint XdpPass = 2, XdpTx = 3;

    private static readonly byte[] LbMac = [2, 0, 0, 0, 0, 1], RouterMac = [2, 0, 0, 0, 0, 2], GatewayMac = [2, 0, 0, 0, 0, 3];

    public static int Run(string[] args)
    {
        string? floorPath = null, skeletonPath = null, baselinePath = null;
        int repeat = 1_000_000, runs = 15;
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string V() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{a} needs a value");
            switch (a)
            {
                case "--floor": floorPath = V(); break;
                case "--skeleton": skeletonPath = V(); break;
                case "--repeat": repeat = Positive(V(), a); break;
                case "--runs": runs = Positive(V(), a); break;
                case "--baseline": baselinePath = V(); break;
                default: throw new ArgumentException($"unknown option {a}");
            }
        }
        if (floorPath is null || skeletonPath is null)
            throw new ArgumentException("xdp-bench needs --floor OBJ and --skeleton OBJ");

        string bpfDir = Path.Combine(AppContext.BaseDirectory, "bpf");
        string pins = $"/sys/fs/bpf/nclb-bench-{Environment.ProcessId}";
        try
        {
            using var floorObj = BpfObject.Load(floorPath);
            using var skeletonObj = BpfObject.Load(skeletonPath);
            using var lb = Open(Path.Combine(bpfDir, "lb_bench.o"), pins + "-lb");
            using var lbNew = Open(Path.Combine(bpfDir, "lb_bench_new.o"), pins + "-new");
            using var baseline = baselinePath is null ? null : Open(baselinePath, pins + "-base");
            var floor = floorObj.Program("xdp_floor");
            var skeleton = skeletonObj.Program("xdp_skeleton");

            byte[] est = Frame4("198.51.100.7", "192.0.2.10", 40000, 0x10, 100);
            byte[] syn = Frame4("198.51.100.7", "192.0.2.10", 40001, 0x02, 0);
            byte[] other = Frame4("198.51.100.7", "192.0.2.99", 40002, 0x10, 100);
            byte[] v6gue = Frame6Udp("2001:db8:f::1", "2001:db8::10", 50000, 443, 100);

            // Interleaved: each round runs every case once, so that a change of load during the
            // run weighs on the floor and on lb alike.
            var f = new List<double>(); var k = new List<double>(); var e = new List<double>(); var s = new List<double>();
            var v = new List<double>(); var o = new List<double>(); var n = new List<double>();
            var be = new List<double>(); var bs = new List<double>(); var bv = new List<double>();
            var steal = new List<double>();
            var start = HostSteal.Sample();
            for (int r = 0; r < runs; r++)
            {
                var before = HostSteal.Sample();
                f.Add(Once(floor, est, XdpTx, repeat));
                k.Add(Once(skeleton, est, XdpTx, repeat));
                e.Add(Once(lb.Program, est, XdpTx, repeat));
                s.Add(Once(lb.Program, syn, XdpTx, repeat));
                v.Add(Once(lb.Program, v6gue, XdpTx, repeat));
                o.Add(Once(lb.Program, other, XdpPass, repeat));
                n.Add(Once(lbNew.Program, syn, XdpTx, repeat));
                if (baseline is not null)
                {
                    be.Add(Once(baseline.Program, est, XdpTx, repeat));
                    bs.Add(Once(baseline.Program, syn, XdpTx, repeat));
                    bv.Add(Once(baseline.Program, v6gue, XdpTx, repeat));
                }
                steal.Add(HostSteal.Percent(before, HostSteal.Sample()));
            }
            double stealAll = HostSteal.Percent(start, HostSteal.Sample());
            double floorM = Median(f), estM = Median(e), synM = Median(s), skelM = Median(k);
            Say($"BPF_PROG_TEST_RUN, repeat {repeat}, median of {runs} rounds (ns per packet; loaded with Netcore.Xdp)");
            Say($"  floor (return XDP_TX)                 {floorM}");
            Say($"  lb established (IPv4 TCP ACK, IPIP)   {estM}");
            Say($"  lb SYN (IPv4 TCP SYN, IPIP)           {synM}");
            Say($"  lb IPv6 UDP, GUE (information)        {Median(v)}");
            Say($"  lb not a service, passed (information) {Median(o)}");
            Say($"  lb new flow, SYN (lb_bench_new.o: hash, ring, memory write; information) {Median(n)}");
            Say($"  helper calls alone (push, 34-byte header, undo; information) {skelM}");
            Say($"  lb established beyond the helper calls (information)  {estM - skelM}");
            if (baseline is not null)
            {
                Say($"  baseline {baselinePath}: established {Median(be)}, SYN {Median(bs)}, IPv6 UDP GUE {Median(bv)}");
                Say($"  this/baseline: established {estM / Median(be):F2}, SYN {synM / Median(bs):F2}, IPv6 UDP GUE {Median(v) / Median(bv):F2}; "
                    + $"per round (established) {string.Join(' ', e.Select((x, i) => (x / be[i]).ToString("F2", CultureInfo.InvariantCulture)))}");
            }

            var (buildLine, buildMs) = Program.MaglevBuild(Backends, MaglevTableBuilder.DefaultSize, 200);
            Say("  " + buildLine);
            // Runs of under 1 ns are reported as 0 by the kernel; count them as 1 so that no ratio divides by 0.
            double F(double x) => Math.Max(x, 1);
            double x = Math.Max(estM, synM) / F(floorM);
            Say($"  ratios: established/floor = {estM / F(floorM):F2}, SYN/floor = {synM / F(floorM):F2}; "
                + $"fastest runs {Math.Max(e.Min(), s.Min()) / F(f.Min()):F2} ({f.Min():F0} ns floor)");
            Say("  per round: " + string.Join(' ', f.Select((fl, i) => (Math.Max(e[i], s[i]) / F(fl)).ToString("F2", CultureInfo.InvariantCulture))));
            // For information: how much CPU time the hypervisor gave to others while the rounds ran
            // (/proc/stat steal; 0 on a host to itself). X swings with it: see the script's header.
            Say($"  host steal during the rounds: {stealAll:F1}% (per round: "
                + string.Join(' ', steal.Select(p => p.ToString("F0", CultureInfo.InvariantCulture))) + ")");
            Say($"packet lb/floor = {x:F2}; build ms = {buildMs:F2}");
            return 0;
        }
        catch (Exception e) when (e is BpfException or BpfObjectException or IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            Console.Error.WriteLine($"lb-xdp: {e.Message}");
            return 1;
        }
        finally
        {
            foreach (string dir in new[] { pins + "-lb", pins + "-new", pins + "-base" })
                if (Directory.Exists(dir))
                {
                    foreach (string file in Directory.EnumerateFiles(dir))
                        File.Delete(file);
                    Directory.Delete(dir);
                }
        }
    }

    /// <summary>
    /// A bench object configured as a node with two services of <see cref="Backends"/> backends
    /// each and rings of the default size, through the daemon's own map writers: 192.0.2.10:80/tcp
    /// (IPIP, backend ids 0-99) and [2001:db8::10]:443/udp (GUE to port 6080, ids 100-199).
    /// </summary>
    private static XdpDataPlane Open(string objectPath, string pinDirectory)
    {
        var dp = XdpDataPlane.Open(new XdpDataPlaneOptions { ObjectPath = objectPath, PinDirectory = pinDirectory });
        try
        {
            dp.SetConfig(LbConfig.Create(GatewayMac, IPAddress.Parse("10.0.0.1"), IPAddress.Parse("2001:db8:1::1"), 1500, 0x5EED));
            int size = MaglevTableBuilder.DefaultSize;
            var builder = new MaglevTableBuilder(size);
            foreach (var (sid, vip, port, protocol, encap) in new[]
            {
                (1u, "192.0.2.10", (ushort)80, ProtocolType.Tcp, Encapsulation.Ipip),
                (2u, "2001:db8::10", (ushort)443, ProtocolType.Udp, Encapsulation.Gue),
            })
            {
                uint first = (sid - 1) * Backends;
                var members = new MaglevBackend[Backends];
                for (int i = 0; i < Backends; i++)
                {
                    string address = string.Create(CultureInfo.InvariantCulture, $"10.0.{sid}.{i + 1}");
                    dp.SetBackend(first + (uint)i, LbBackend.Create(IPAddress.Parse(address), sid));
                    members[i] = new MaglevBackend(address, 1);
                }
                dp.SetService(LbServiceKey.Create(IPAddress.Parse(vip), port, protocol), LbService.Create(sid, size, encap));
                int[] table = new int[size];
                builder.Build(members, table);
                dp.SwapRing(sid, [.. table.Select(slot => first + (uint)slot)]);
            }
            return dp;
        }
        catch
        {
            dp.Dispose();
            throw;
        }
    }

    /// <summary>One test run of <paramref name="repeat"/> repetitions: the kernel's average ns per run; checks the XDP action.</summary>
    private static double Once(BpfProgram program, byte[] frame, uint action, int repeat)
    {
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                var r = program.TestRun(frame, default, repeat);
                if (r.ReturnValue != action)
                    throw new InvalidOperationException($"{program.Name}: XDP action {r.ReturnValue}, expected {action}");
                return r.AverageNanoseconds;
            }
            catch (BpfException e) when (e.ErrorName == "EINTR" && attempt < 5)
            {
                // A signal reached the thread (the runtime suspends threads for a GC): run again.
            }
        }
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[(sorted.Count - 1) / 2];
    }

    private static void Say(FormattableString line) => Console.WriteLine("lb-xdp: " + line.ToString(CultureInfo.InvariantCulture));

    private static void Say(string line) => Console.WriteLine("lb-xdp: " + line);

    private static int Positive(string s, string what) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0 ? v : throw new ArgumentException($"{what}: '{s}' is not a positive integer");

    /// <summary>Ethernet, IPv4 (DF, TTL 61, checksum), TCP to port 80 with the flags and payload size.</summary>
    private static byte[] Frame4(string src, string dst, ushort sourcePort, byte flags, int payload)
    {
        byte[] p = Ethernet(0x0800, 20 + 20 + payload);
        Span<byte> ip = p.AsSpan(14);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(40 + payload));
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 0x1234);
        BinaryPrimitives.WriteUInt16BigEndian(ip[6..], 0x4000);
        ip[8] = 61;
        ip[9] = 6;
        IPAddress.Parse(src).TryWriteBytes(ip[12..], out _);
        IPAddress.Parse(dst).TryWriteBytes(ip[16..], out _);
        uint sum = 0;
        for (int i = 0; i < 20; i += 2)
            sum += BinaryPrimitives.ReadUInt16BigEndian(ip[i..]);
        while (sum > 0xffff)
            sum = (sum & 0xffff) + (sum >> 16);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~sum);
        Span<byte> tcp = ip[20..];
        BinaryPrimitives.WriteUInt16BigEndian(tcp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], 80);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], 1);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], 2);
        tcp[12] = 0x50;
        tcp[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 64240);
        return p;
    }

    /// <summary>Ethernet, IPv6 (hop limit 61), UDP with the payload size.</summary>
    private static byte[] Frame6Udp(string src, string dst, ushort sourcePort, ushort destinationPort, int payload)
    {
        byte[] p = Ethernet(0x86DD, 40 + 8 + payload);
        Span<byte> ip = p.AsSpan(14);
        BinaryPrimitives.WriteUInt32BigEndian(ip, 6u << 28);
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(8 + payload));
        ip[6] = 17;
        ip[7] = 61;
        IPAddress.Parse(src).TryWriteBytes(ip[8..], out _);
        IPAddress.Parse(dst).TryWriteBytes(ip[24..], out _);
        Span<byte> udp = ip[40..];
        BinaryPrimitives.WriteUInt16BigEndian(udp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)(8 + payload));
        return p;
    }

    private static byte[] Ethernet(ushort etherType, int payload)
    {
        byte[] p = new byte[14 + payload];
        LbMac.CopyTo(p, 0);
        RouterMac.CopyTo(p, 6);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(12), etherType);
        return p;
    }
}
