using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Netcore.LoadBalancer.DataPlane;

namespace Netcore.LoadBalancer.Tests;

/// <summary>
/// lb.o attached in native XDP mode to a veth in a namespace, on a bridge shared with a client
/// and a backend: a real TCP SYN from the client's stack to the VIP must arrive at the backend
/// IPIP-encapsulated, while the LB node's own traffic (ARP, ping) still passes.
/// </summary>
public class VethTests(ITestOutputHelper output)
{
    [LinuxFact(Netns = true, Bpf = true, Tools = ["clang-14", "tcpdump", "python3", "ping"])]
    public void SynFromAClient_ReachesTheBackendEncapsulated_OnNativeXdp()
    {
        using var sw = TestNetns.Create("lbsw");
        using var cl = TestNetns.Create("lbcl");
        using var lbNs = TestNetns.Create("lblb");
        using var be = TestNetns.Create("lbbe");
        sw.Exec("ip link add br0 type bridge && ip link set br0 up");
        foreach (var (ns, port, addr) in new[] { (cl, "s-cl", "10.9.0.2/24"), (lbNs, "s-lb", "10.9.0.3/24"), (be, "s-be", "10.9.0.7/24") })
        {
            ns.Veth("e0", sw, port, localAddress: addr);
            sw.Exec($"ip link set {port} master br0");
        }
        cl.Exec("ip route add 192.0.2.10/32 via 10.9.0.3");

        using var lb = new LbBpf();
        string beMac = be.IpJson("link show e0")[0].GetProperty("address").GetString()!;
        lb.SetConfig(LbConfig.Create(Convert.FromHexString(beMac.Replace(":", "", StringComparison.Ordinal)), IPAddress.Parse("10.9.0.3"), null, 1500, 7));
        lb.SetBackend(7, IPAddress.Parse("10.9.0.7"), 1);
        lb.AddService(LbServiceKey.Create(IPAddress.Parse("192.0.2.10"), 80, ProtocolType.Tcp), LbService.Create(1, 13, Encapsulation.Ipip));
        lb.SwapRing(1, 7);

        // XDP_TX on a veth hands the frame to its peer's NAPI, which exists only while the peer has
        // an XDP program (or GRO): give the bridge-side end a program that passes everything.
        // Both attach through Netcore.Xdp bpf_links (native mode), each made inside its namespace.
        using var pass = PassProgram.Load();
        int lbIf = lbNs.IpJson("link show e0")[0].GetProperty("ifindex").GetInt32();
        int swIf = sw.IpJson("link show s-lb")[0].GetProperty("ifindex").GetInt32();
        using var lbLink = lb.DataPlane.Program.AttachXdp(lbIf, Netcore.Xdp.XdpMode.Native, lbNs.Path);
        using var passLink = pass.Program("xdp_pass").AttachXdp(swIf, Netcore.Xdp.XdpMode.Native, sw.Path);
        Assert.Contains("xdp", lbNs.Exec("ip link show e0"), StringComparison.Ordinal);

        // The node's own traffic is not a service: ARP and ICMP pass to its stack.
        cl.Exec("ping -c 1 -W 2 10.9.0.3");

        string pcap = Path.Combine(Path.GetTempPath(), $"nclb-{Guid.NewGuid():N}.pcap");
        try
        {
            using var dump = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", be.Name, "timeout", "15", "tcpdump", "-i", "e0", "-n", "-U", "-c", "1", "-w", pcap, "ip proto 4"])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            })!;
            string? line;
            while ((line = dump.StandardError.ReadLine()) is not null && !line.Contains("listening", StringComparison.Ordinal))
                output.WriteLine(line);
            cl.TryExec("python3 -c \"import socket; s=socket.socket(); s.settimeout(1); s.connect_ex(('192.0.2.10', 80))\"");
            Assert.True(dump.WaitForExit(20_000), "tcpdump did not finish");
            Assert.Equal(0, dump.ExitCode);

            byte[] frame = FirstPcapFrame(File.ReadAllBytes(pcap));
            output.WriteLine(LbBpf.Hex(frame));
            Assert.Equal(beMac, string.Join(':', frame[0..6].Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture))));
            Assert.Equal(Packets.EthIPv4, BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)));
            Assert.Equal(4, frame[23]);                                                         // IPIP
            Assert.Equal("10.9.0.3", new IPAddress(frame.AsSpan(26, 4)).ToString());
            Assert.Equal("10.9.0.7", new IPAddress(frame.AsSpan(30, 4)).ToString());
            Assert.Equal(0, InternetChecksum.Compute(frame.AsSpan(14, 20)));
            Assert.Equal("10.9.0.2", new IPAddress(frame.AsSpan(34 + 12, 4)).ToString());    // inner packet: client -> VIP
            Assert.Equal("192.0.2.10", new IPAddress(frame.AsSpan(34 + 16, 4)).ToString());
            int l4 = 34 + (frame[34] & 0x0f) * 4;
            Assert.Equal(80, BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(l4 + 2)));
            Assert.Equal(0x02, frame[l4 + 13] & 0x12);                                        // SYN
        }
        finally
        {
            File.Delete(pcap);
        }
        Assert.True(lb.ServiceStats(1).packets >= 1);
        Assert.True(lb.BackendStats(7).packets >= 1);
    }

    /// <summary>The first packet of a classic pcap file (libpcap format: 24-byte header, 16-byte record headers).</summary>
    private static byte[] FirstPcapFrame(byte[] file)
    {
        Assert.True(file.Length > 40, "empty capture");
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(file);
        bool le = magic is 0xa1b2c3d4 or 0xa1b23c4d;
        int caplen = (int)(le ? BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(24 + 8)) : BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(24 + 8)));
        return file[40..(40 + caplen)];
    }
}
