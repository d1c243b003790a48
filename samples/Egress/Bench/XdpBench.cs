using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using Netcore.Egress.Daemon;
using Netcore.Egress.DataPlane;
using Netcore.Xdp;

namespace Netcore.Egress.Bench;

/// <summary>
/// <c>xdp-bench</c>, the measuring half of benchmarks/compare/egress-xdp.sh: the per-packet cost of
/// egress_xdp under BPF_PROG_TEST_RUN (the kernel runs the program REPEAT times on one frame and
/// reports the average ns per run), loaded and configured by the daemon's own
/// <see cref="EgressDataPlane"/> (192.0.2.1 and 2001:db8:ffff::1; this machine 33000-33999, one
/// other machine 34000-34999), against <c>pass_xdp</c> of the same object, which only returns (the
/// test-run loop's own cost: the floor). RUNS rounds; each round runs every case once, back to back,
/// so a change of load weighs on all cases alike. Prints one line per case,
/// <c>egress-xdp: CASE median_ns=M min_ns=A max_ns=B over_floor_ns=D</c>, then the summary line
/// <c>egress-xdp: packet ipv6/ipv4 forwarded = X; ipv4 forwarded/floor = Y; ipv6 forwarded/floor = Z</c>.
/// </summary>
internal static class XdpBench
{
    private const uint XdpPass = 2, XdpTx = 3;
    private static readonly byte[] LocalMac = [2, 0, 0, 0, 0, 0x0a], PeerMac = [2, 0, 0, 0, 0, 0x0b], RouterMac = [2, 0, 0, 0, 0, 1];
    private static readonly IPAddress Shared = IPAddress.Parse("192.0.2.1"), Shared6 = IPAddress.Parse("2001:db8:ffff::1");
    private static readonly IPAddress Server = IPAddress.Parse("198.51.100.7"), Server6 = IPAddress.Parse("2001:db8:11::2");

    /// <summary>Runs the cases; returns 0, or 1 when a case's verdict is not the expected one.</summary>
    public static int Run(int repeat, int runs, TextWriter output)
    {
        using var dp = EgressDataPlane.Load(Shared, Shared6, new PhysicalAddress(LocalMac));
        dp.SetOwners(new PortRange(33000, 33999), [new EgressPeer(new PortRange(34000, 34999), new PhysicalAddress(PeerMac))]);
        using var floorObj = BpfObject.Load(EgressDataPlane.DefaultObjectPath);
        var floor = floorObj.Program("pass_xdp");
        var egress = dp.Program;

        byte[] ptbQuote = Packet(false, Shared6, Server6, 6, Tcp(34000, 443, 1280 - 40 - 20 - 48))[14..]; // 1,232 bytes: fits in 1,280 with the outer headers
        var cases = new (string Name, BpfProgram Program, byte[] Frame, uint Verdict)[]
        {
            ("floor (pass_xdp)", floor, Packet(true, Server, Shared, 6, Tcp(443, 33000)), XdpPass),
            ("ipv4 tcp local", egress, Packet(true, Server, Shared, 6, Tcp(443, 33000)), XdpPass),
            ("ipv4 tcp forwarded", egress, Packet(true, Server, Shared, 6, Tcp(443, 34000)), XdpTx),
            ("ipv6 tcp local", egress, Packet(false, Server6, Shared6, 6, Tcp(443, 33000)), XdpPass),
            ("ipv6 tcp forwarded", egress, Packet(false, Server6, Shared6, 6, Tcp(443, 34000)), XdpTx),
            ("ipv6 tcp forwarded, 2 extension headers", egress, Packet(false, Server6, Shared6, 0, [60, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0, .. Tcp(443, 34000)]), XdpTx),
            ("ipv6 packet too big forwarded", egress, Packet(false, IPAddress.Parse("2001:db8:10::1"), Shared6, 58, [2, 0, 0, 0, 0, 0, 5, 0, .. ptbQuote]), XdpTx),
        };
        byte[] outBuf = new byte[2048];
        foreach (var c in cases)
        {
            uint v = c.Program.TestRun(c.Frame, outBuf).ReturnValue;
            if (v != c.Verdict)
            {
                output.WriteLine($"egress-xdp: {c.Name}: verdict {v}, expected {c.Verdict}");
                return 1;
            }
        }
        var ns = cases.Select(_ => new List<uint>()).ToArray();
        for (int r = 0; r < runs; r++)
            for (int i = 0; i < cases.Length; i++)
                ns[i].Add(cases[i].Program.TestRun(cases[i].Frame, outBuf, repeat).AverageNanoseconds);
        double floorMedian = Median(ns[0]);
        for (int i = 0; i < cases.Length; i++)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"egress-xdp: {cases[i].Name} ({cases[i].Frame.Length} bytes) median_ns={Median(ns[i])} min_ns={ns[i].Min()} max_ns={ns[i].Max()} over_floor_ns={Median(ns[i]) - floorMedian}"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"egress-xdp: packet ipv6/ipv4 forwarded = {Median(ns[4]) / Median(ns[2]):F2}; ipv4 forwarded/floor = {Median(ns[2]) / floorMedian:F2}; ipv6 forwarded/floor = {Median(ns[4]) / floorMedian:F2} ({runs} rounds of {repeat} runs)"));
        return 0;
    }

    private static double Median(List<uint> v)
    {
        var s = v.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2.0;
    }

    /// <summary>A TCP header with the ACK flag and <paramref name="payload"/> zero bytes (checksums are not looked at).</summary>
    private static byte[] Tcp(ushort sport, ushort dport, int payload = 0)
    {
        var t = new byte[20 + payload];
        BinaryPrimitives.WriteUInt16BigEndian(t, sport);
        BinaryPrimitives.WriteUInt16BigEndian(t.AsSpan(2), dport);
        t[12] = 0x50;
        t[13] = 0x10;
        return t;
    }

    /// <summary>Ethernet (router → this machine) and an IPv4 (20-byte header, DF) or IPv6 header in front of <paramref name="payload"/>.</summary>
    private static byte[] Packet(bool v4, IPAddress src, IPAddress dst, byte protocol, byte[] payload)
    {
        int ipLen = v4 ? 20 : 40;
        var f = new byte[14 + ipLen + payload.Length];
        LocalMac.CopyTo(f, 0);
        RouterMac.CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), v4 ? (ushort)0x0800 : (ushort)0x86dd);
        var ip = f.AsSpan(14, ipLen);
        if (v4)
        {
            ip[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(ipLen + payload.Length));
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = protocol;
            src.GetAddressBytes().CopyTo(ip[12..]);
            dst.GetAddressBytes().CopyTo(ip[16..]);
        }
        else
        {
            ip[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)payload.Length);
            ip[6] = protocol;
            ip[7] = 64;
            src.GetAddressBytes().CopyTo(ip[8..]);
            dst.GetAddressBytes().CopyTo(ip[24..]);
        }
        payload.CopyTo(f, 14 + ipLen);
        return f;
    }
}
