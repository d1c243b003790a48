using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Netcore.Threading;

namespace Netcore.Xdp.Tests;

/// <summary>End-to-end attach tests on a veth pair between two fresh namespaces: a (10.0.0.1) and b (10.0.0.2).</summary>
public sealed class AttachTests : IDisposable
{
    private readonly TestNetns _a;
    private readonly TestNetns _b;

    public AttachTests()
    {
        _a = TestNetns.Create("xa");
        _b = TestNetns.Create("xb");
        _a.Veth("va", _b, "vb", "10.0.0.1/24", "10.0.0.2/24");
    }

    public void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
    }

    private int IfindexB => _b.IpJson("link show vb")[0].GetProperty("ifindex").GetInt32();

    private bool Ping(int count = 3) => _a.TryExec($"ping -c {count} -i 0.2 -W 1 10.0.0.2", TimeSpan.FromSeconds(20)).ExitCode == 0;

    private static ulong Sum(PerCpuMap<uint, ulong> map, uint key) => map.Sum(key);

    [LinuxFact(Bpf = true, Netns = true, Tools = ["clang-14", "ping"])]
    public void XdpLinkCountsDropsAndPasses()
    {
        using var obj = BpfObject.Load(BpfSources.Object("xdp_count"));
        int ifindex = IfindexB;
        using var link = NetnsThread.Run(_b.Path, () => obj.Program("xdp_count").AttachXdp(ifindex));
        var info = link.GetInfo();
        Assert.Equal(BpfLinkType.Xdp, info.Type);
        Assert.Equal(ifindex, info.Ifindex);
        Assert.Equal(obj.Program("xdp_count").GetInfo().Id, info.ProgramId);
        using (var nl = Netcore.Netlink.NetlinkClient.Open(_b.Path))
        {
            // The default mode on veth is native (the driver has ndo_bpf); netlink reports what is in effect.
            var (mode, id) = XdpNetlinkAttachment.QueryAsync(nl, ifindex).AsTask().Result;
            Assert.Equal(XdpMode.Native, mode);
            Assert.Equal(info.ProgramId, id);
        }

        var counters = obj.Map("counters").AsPerCpu<uint, ulong>();
        Assert.True(Ping());
        Assert.True(Sum(counters, 1) >= 3, "ICMP packets counted");

        obj.Global("drop_icmp").Write(1u);
        Assert.False(Ping(2));
        Assert.True(Sum(counters, 2) >= 2, "ICMP packets dropped");

        obj.Global("drop_icmp").Write(0u);
        Assert.True(Ping());

        link.Dispose(); // closing the last fd detaches
        Assert.DoesNotContain("prog/xdp", _b.TryExec("ip -d link show vb").StdOut, StringComparison.Ordinal);
    }

    [LinuxFact(Bpf = true, Netns = true, Tools = ["clang-14", "ping"])]
    public void LinkReplaceWithExpectedProgramHasNoGapAndRefusesStale()
    {
        using var obj = BpfObject.Load(BpfSources.Object("xdp_count"));
        var count = obj.Program("xdp_count");
        var pass = obj.Program("xdp_pass");
        int ifindex = IfindexB;
        using var link = count.AttachXdp(ifindex, netns: _b.Path);

        // A fast ping runs while the program is swapped back and forth 20 times: no packet may be lost.
        // -w: ping waits for every reply (up to 25 s) instead of twice the largest RTT after its last
        // send, which a stall of ping or of softirq processing on a loaded machine can outlast; a
        // packet really lost still shows (ping sends one more and reports the loss).
        var pinger = Task.Run(() => _a.TryExec("ping -c 400 -i 0.005 -w 25 -q 10.0.0.2", TimeSpan.FromSeconds(60)));
        Thread.Sleep(100);
        var current = count;
        for (int i = 0; i < 20; i++)
        {
            var next = current == count ? pass : count;
            link.Update(next, expectedOld: current);
            current = next;
            Thread.Sleep(50);
        }
        var result = pinger.Result;
        Assert.Contains(" 0% packet loss", result.StdOut, StringComparison.Ordinal);
        Assert.Equal(current.GetInfo().Id, link.GetInfo().ProgramId);

        // A stale expected program is refused and the attachment is unchanged.
        var stale = current == count ? pass : count;
        var e = Assert.Throws<BpfException>(() => link.Update(stale, expectedOld: stale));
        Assert.Equal("EPERM", e.ErrorName);
        Assert.Equal(current.GetInfo().Id, link.GetInfo().ProgramId);
        Assert.True(Sum(obj.Map("counters").AsPerCpu<uint, ulong>(), 3) > 0, "xdp_pass ran while it was attached");
    }

    [LinuxFact(Bpf = true, Netns = true, Tools = ["clang-14", "ping", "bpftool"])]
    public void PinnedLinkSurvivesTheLoadingProcess()
    {
        string obj = BpfSources.Object("xdp_count");
        string linkPin = $"/sys/fs/bpf/nct_link_{Environment.ProcessId}";
        string mapPin = $"/sys/fs/bpf/nct_cnt_{Environment.ProcessId}";
        try
        {
            string dll = typeof(Program).Assembly.Location;
            Shell.Run("dotnet", [dll, "xdp-pin-child", _b.Path, "vb", obj, linkPin, mapPin], TimeSpan.FromSeconds(60)).EnsureSuccess("child loader");
            // The child has exited; the link is held by its pin only.
            using var link = BpfLink.FromPin(linkPin);
            var info = link.GetInfo();
            Assert.Equal(BpfLinkType.Xdp, info.Type);
            Assert.Equal(IfindexB, info.Ifindex);
            using var prog = BpfProgram.FromId(info.ProgramId);
            Assert.Equal("xdp_count", prog.Name);
            var shown = JsonDocument.Parse(Shell.ShOk($"bpftool link show pinned {linkPin} -j")).RootElement;
            Assert.Equal(info.Id, shown.GetProperty("id").GetUInt32());
            Assert.Equal(info.ProgramId, shown.GetProperty("prog_id").GetUInt32());

            using var counters = BpfMap.FromPin(mapPin);
            Assert.True(Ping());
            Assert.True(Sum(counters.AsPerCpu<uint, ulong>(), 1) >= 3, "the program attached by the exited process still counts");

            link.Detach();
            Assert.DoesNotContain("prog/xdp", _b.TryExec("ip -d link show vb").StdOut, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(linkPin);
            File.Delete(mapPin);
        }
    }

    [LinuxFact(Bpf = true, Netns = true, Tools = ["clang-14", "ping"])]
    public void TcxProgramCountsAndDrops()
    {
        if (!BpfFeatures.SupportsTcx())
            return;
        using var obj = BpfObject.Load(BpfSources.Object("tc_count"));
        int ifindex = IfindexB;
        using var link = obj.Program("tc_count").AttachTcx(ifindex, TcxDirection.Ingress, netns: _b.Name);
        var info = link.GetInfo();
        Assert.Equal(BpfLinkType.Tcx, info.Type);
        Assert.Equal(BpfAttachType.TcxIngress, info.AttachType);
        var stats = obj.Map("tc_stats").AsMap<uint, ulong>();
        Assert.True(Ping());
        Assert.True(stats.Lookup(0) >= 3);
        obj.Global("tc_drop_icmp").Write(1u);
        Assert.False(Ping(2));
        Assert.True(stats.Lookup(1) >= 2);
        link.Dispose();
        Assert.True(Ping(1));
    }

    [LinuxFact(Bpf = true, Netns = true, Tools = ["clang-14", "ping"])]
    public void TcxEgressDropsReplies()
    {
        if (!BpfFeatures.SupportsTcx())
            return;
        using var obj = BpfObject.Load(BpfSources.Object("tc_count"));
        using var link = obj.Program("tc_count").AttachTcx(IfindexB, TcxDirection.Egress, netns: _b.Name);
        Assert.Equal(BpfAttachType.TcxEgress, link.GetInfo().AttachType);
        Assert.True(Ping());
        obj.Global("tc_drop_icmp").Write(1u);
        Assert.False(Ping(2)); // echo replies leave vb through the egress hook and are dropped
        Assert.True(obj.Map("tc_stats").AsMap<uint, ulong>().Lookup(1) >= 2);
    }

    [LinuxFact(Bpf = true, Netns = true, Tools = ["clang-14"])]
    public void SkLookupSteersConnectionsToTheMapSocket()
    {
        using var obj = BpfObject.Load(BpfSources.Object("sk_lookup"));
        using var listener = NetnsThread.Run(_b.Path, () =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.Bind(new IPEndPoint(IPAddress.Loopback, 8888));
            s.Listen();
            return s;
        });
        obj.Map("target").UpdateSocket(0, (int)listener.Handle);
        using var link = obj.Program("redirect_7777").AttachSkLookup(_b.Path);
        var info = link.GetInfo();
        Assert.Equal(BpfLinkType.Netns, info.Type);
        Assert.Equal(BpfAttachType.SkLookup, info.AttachType);

        // Nothing listens on 7777: sk_lookup hands the connection to the socket on 8888.
        using var client = NetnsThread.Run(_b.Path, () =>
        {
            var c = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            c.Connect(new IPEndPoint(IPAddress.Loopback, 7777));
            return c;
        });
        using var accepted = listener.Accept();
        Assert.Equal(7777, ((IPEndPoint)accepted.LocalEndPoint!).Port);
        client.Send("hi"u8);
        var buf = new byte[2];
        Assert.Equal(2, accepted.Receive(buf));
        Assert.Equal("hi"u8.ToArray(), buf);

        // Without the link, 7777 is refused again.
        link.Dispose();
        Assert.Throws<SocketException>(() => NetnsThread.Run(_b.Path, () =>
        {
            using var c = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            c.Connect(new IPEndPoint(IPAddress.Loopback, 7777));
            return 0;
        }));
    }
}
