using Netcore.Netlink;

namespace Netcore.Xdp.Tests;

/// <summary>IFLA_XDP and tc clsact attach through Netcore.Netlink, on a veth pair in fresh namespaces.</summary>
public sealed class NetlinkAttachTests : IDisposable
{
    private readonly TestNetns _a;
    private readonly TestNetns _b;

    public NetlinkAttachTests()
    {
        _a = TestNetns.Create("na");
        _b = TestNetns.Create("nb");
        _a.Veth("va", _b, "vb", "10.0.0.1/24", "10.0.0.2/24");
    }

    public void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
    }

    private bool Ping(int count = 3) => _a.TryExec($"ping -c {count} -i 0.2 -W 1 10.0.0.2", TimeSpan.FromSeconds(20)).ExitCode == 0;

    [LinuxTheory(Bpf = true, Netns = true, Tools = ["clang-14", "ping"])]
    [InlineData(XdpMode.Generic)]
    [InlineData(XdpMode.Native)]
    public async Task XdpModesReplaceWithExpectedAndRefuseStale(XdpMode mode)
    {
        using var obj = BpfObject.Load(BpfSources.Object("xdp_count"));
        var count = obj.Program("xdp_count");
        var pass = obj.Program("xdp_pass");
        using var client = NetlinkClient.Open(_b.Path);
        int ifindex = await client.GetLinkIndexAsync("vb");
        var att = await XdpNetlinkAttachment.AttachAsync(client, ifindex, count, mode);
        Assert.Equal(mode, att.EffectiveMode);
        Assert.Equal(count.GetInfo().Id, att.ProgramId);
        Assert.Contains(mode == XdpMode.Generic ? "xdpgeneric" : "xdp", _b.Exec("ip link show vb"), StringComparison.Ordinal);

        // A second attach without replace is refused: nobody overwrites a running program by accident.
        await Assert.ThrowsAsync<NetlinkException>(async () => await XdpNetlinkAttachment.AttachAsync(client, ifindex, pass, mode));

        // -w: wait for every reply, not twice the largest RTT after the last send (see AttachTests).
        var pinger = Task.Run(() => _a.TryExec("ping -c 300 -i 0.005 -w 25 -q 10.0.0.2", TimeSpan.FromSeconds(60)));
        await Task.Delay(100);
        var current = count;
        for (int i = 0; i < 10; i++)
        {
            var next = current == count ? pass : count;
            await att.ReplaceAsync(next, current);
            current = next;
            await Task.Delay(50);
        }
        Assert.Contains(" 0% packet loss", (await pinger).StdOut, StringComparison.Ordinal);
        Assert.Equal(current.GetInfo().Id, att.ProgramId);

        var stale = current == count ? pass : count;
        var e = await Assert.ThrowsAsync<NetlinkException>(async () => await att.ReplaceAsync(stale, stale));
        Assert.Equal("EEXIST", e.ErrnoName);
        Assert.Equal(current.GetInfo().Id, (await XdpNetlinkAttachment.QueryAsync(client, ifindex)).ProgramId);

        await att.DetachAsync();
        Assert.Equal(0u, (await XdpNetlinkAttachment.QueryAsync(client, ifindex)).ProgramId);
        Assert.True(Ping(1));
    }

    [LinuxFact(Bpf = true, Netns = true, Tools = ["clang-14", "ping", "tc"])]
    public async Task TcClsactDirectActionFilter()
    {
        using var obj = BpfObject.Load(BpfSources.Object("tc_count"));
        using var client = NetlinkClient.Open(_b.Path);
        int ifindex = await client.GetLinkIndexAsync("vb");
        var att = await TcNetlinkAttachment.AttachAsync(client, ifindex, TcDirection.Ingress, obj.Program("tc_count"));
        string shown = _b.Exec("tc filter show dev vb ingress");
        Assert.Contains("direct-action", shown, StringComparison.Ordinal);
        Assert.Contains($"id {obj.Program("tc_count").GetInfo().Id}", shown, StringComparison.Ordinal);

        var stats = obj.Map("tc_stats").AsMap<uint, ulong>();
        Assert.True(Ping());
        Assert.True(stats.Lookup(0) >= 3);
        obj.Global("tc_drop_icmp").Write(1u);
        Assert.False(Ping(2));
        Assert.True(stats.Lookup(1) >= 2);

        await att.DetachAsync();
        Assert.True(Ping(1));
    }
}
