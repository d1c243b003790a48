using System.Text.Json;

namespace Netcore.Netlink.Tests;

/// <summary>XDP attach through IFLA_XDP and tc clsact/bpf filters, checked with ip and tc.</summary>
public sealed class XdpTcIntegrationTests
{
    [LinuxFact(Netns = true, Bpf = true)]
    public async Task Xdp_AttachQueryReplaceDetach()
    {
        using var ns = TestNetns.Create("xd");
        using var client = NetlinkClient.Open(ns.Name);
        int idx = await client.CreateVethAsync("x0", "x1");
        using var p1 = TestBpf.Load(TestBpf.ProgTypeXdp, 2);
        using var p2 = TestBpf.Load(TestBpf.ProgTypeXdp, 2);

        Assert.Equal(XdpAttachMode.None, (await client.GetXdpAsync(idx)).Mode);
        await client.AttachXdpAsync(idx, p1, XdpAttachFlags.SkbMode | XdpAttachFlags.UpdateIfNoExist);
        XdpStatus s = await client.GetXdpAsync(idx);
        Assert.Equal(XdpAttachMode.Skb, s.Mode);
        Assert.Equal(TestBpf.ProgramId(p1), s.ProgramId);
        JsonElement xdp = ns.IpJson("link show dev x0")[0].GetProperty("xdp");
        Assert.Equal((int)TestBpf.ProgramId(p1), xdp.GetProperty("prog").GetProperty("id").GetInt32());

        // UPDATE_IF_NOEXIST refuses to replace.
        var busy = await Assert.ThrowsAsync<NetlinkException>(async () =>
            await client.AttachXdpAsync(idx, p2, XdpAttachFlags.SkbMode | XdpAttachFlags.UpdateIfNoExist));
        Assert.Equal("EBUSY", busy.ErrnoName);
        // REPLACE with the wrong expected program fails; with the right one it works.
        await Assert.ThrowsAsync<NetlinkException>(async () =>
            await client.AttachXdpAsync(idx, p2, XdpAttachFlags.SkbMode | XdpAttachFlags.Replace, p2));
        await client.AttachXdpAsync(idx, p2, XdpAttachFlags.SkbMode | XdpAttachFlags.Replace, p1);
        Assert.Equal(TestBpf.ProgramId(p2), (await client.GetXdpAsync(idx)).SkbProgramId);

        await client.DetachXdpAsync(idx, XdpAttachFlags.SkbMode);
        Assert.Equal(XdpAttachMode.None, (await client.GetXdpAsync(idx)).Mode);
        Assert.False(ns.IpJson("link show dev x0")[0].TryGetProperty("xdp", out _));
    }

    [LinuxFact(Netns = true, Bpf = true)]
    public async Task Xdp_NativeModeOnVeth()
    {
        using var ns = TestNetns.Create("xn");
        using var client = NetlinkClient.Open(ns.Name);
        int idx = await client.CreateVethAsync("x0", "x1");
        await client.SetLinkUpAsync(idx);
        await client.SetLinkUpAsync(await client.GetLinkIndexAsync("x1"));
        using var p = TestBpf.Load(TestBpf.ProgTypeXdp, 2);
        await client.AttachXdpAsync(idx, (int)p.DangerousGetHandle(), XdpAttachFlags.DriverMode);
        XdpStatus s = await client.GetXdpAsync(idx);
        Assert.Equal(XdpAttachMode.Driver, s.Mode);
        Assert.Equal(TestBpf.ProgramId(p), s.DriverProgramId);
        await client.DetachXdpAsync(idx, XdpAttachFlags.DriverMode);
        Assert.Equal(XdpStatus.NotAttached, await client.GetXdpAsync(idx));
    }

    [LinuxFact(Netns = true, Bpf = true, Tools = ["tc"])]
    public async Task Tc_ClsactAndBpfFilter_SeenByTc()
    {
        using var ns = TestNetns.Create("tc");
        using var client = NetlinkClient.Open(ns.Name);
        int idx = await client.CreateVethAsync("t0", "t1");
        using var prog = TestBpf.Load(TestBpf.ProgTypeSchedCls, 0);
        await client.AddClsactQdiscAsync(idx);
        await client.AddClsactQdiscAsync(idx); // idempotent
        Assert.Contains(await client.GetQdiscsAsync(idx).ToListAsync(), q => q.Kind == "clsact");
        await client.AttachBpfFilterAsync(idx, TcDirection.Ingress, prog, new TcBpfFilterOptions { Name = "ing" });
        await client.AttachBpfFilterAsync(idx, TcDirection.Egress, prog, new TcBpfFilterOptions { Name = "eg", Priority = 7 });

        string ingress = ns.Exec("tc filter show dev t0 ingress");
        Assert.Contains("bpf", ingress, StringComparison.Ordinal);
        Assert.Contains("ing", ingress, StringComparison.Ordinal);
        Assert.Contains("direct-action", ingress, StringComparison.Ordinal);
        Assert.Contains("pref 7", ns.Exec("tc filter show dev t0 egress"), StringComparison.Ordinal);

        TcFilter f = Assert.Single(await client.GetFiltersAsync(idx, TcDirection.Ingress).ToListAsync());
        Assert.Equal("bpf", f.Kind);
        Assert.Equal("ing", f.BpfName);
        Assert.True(f.DirectAction);
        Assert.Equal(TestBpf.ProgramId(prog), f.BpfProgramId);
        Assert.Equal((ushort)1, f.Priority);

        await client.DeleteBpfFilterAsync(idx, TcDirection.Ingress);
        Assert.Empty(await client.GetFiltersAsync(idx, TcDirection.Ingress).ToListAsync());
        await client.DeleteClsactQdiscAsync(idx);
        Assert.DoesNotContain("clsact", ns.Exec("tc qdisc show dev t0"), StringComparison.Ordinal);
    }

    [LinuxFact(Netns = true, Tools = ["tc"])]
    public async Task Netem_DelayAndLoss_SeenByTc()
    {
        using var ns = TestNetns.Create("nm");
        using var client = NetlinkClient.Open(ns.Name);
        int idx = await client.CreateVethAsync("n0", "n1");
        var opts = new NetemOptions { Delay = TimeSpan.FromMilliseconds(20), Jitter = TimeSpan.FromMilliseconds(5), LossPercent = 10 };
        if (ns.TryExec("tc qdisc add dev n1 root netem delay 1ms").ExitCode != 0)
        {
            // This kernel has no sch_netem: the error must say so.
            var e = await Assert.ThrowsAsync<NetlinkKernelLacksException>(async () => await client.AddNetemQdiscAsync(idx, opts));
            Assert.Contains("netem", e.Feature, StringComparison.Ordinal);
            return;
        }
        await client.AddNetemQdiscAsync(idx, opts);
        string q = ns.Exec("tc qdisc show dev n0");
        Assert.Contains("netem", q, StringComparison.Ordinal);
        Assert.Contains("delay 20ms  5ms", q, StringComparison.Ordinal);
        Assert.Contains("loss 10%", q, StringComparison.Ordinal);
        await client.DeleteRootQdiscAsync(idx);
        Assert.DoesNotContain("netem", ns.Exec("tc qdisc show dev n0"), StringComparison.Ordinal);
    }

    [LinuxFact(Netns = true, Tools = ["tc"])]
    public async Task Htb_QdiscAndClass_SeenByTc()
    {
        using var ns = TestNetns.Create("hb");
        using var client = NetlinkClient.Open(ns.Name);
        int idx = await client.CreateVethAsync("h0", "h1");
        await client.AddHtbQdiscAsync(idx, 0x00010000, defaultClass: 0x10);
        await client.AddHtbClassAsync(idx, new HtbClassOptions { Parent = 0x00010000, ClassId = 0x00010001, RateBytesPerSecond = 12_500_000 });
        await client.AddHtbClassAsync(idx, new HtbClassOptions { Parent = 0x00010001, ClassId = 0x00010010, RateBytesPerSecond = 1_250_000, CeilBytesPerSecond = 12_500_000, Priority = 1 });
        string q = ns.Exec("tc qdisc show dev h0");
        Assert.Contains("htb 1: root", q, StringComparison.Ordinal);
        Assert.Contains("default 0x10", q, StringComparison.Ordinal);
        string c = ns.Exec("tc class show dev h0");
        Assert.Contains("class htb 1:1 root rate 100Mbit ceil 100Mbit", c, StringComparison.Ordinal);
        Assert.Contains("class htb 1:10 parent 1:1 prio 1 rate 10Mbit ceil 100Mbit", c, StringComparison.Ordinal);
        Assert.Contains(await client.GetQdiscsAsync(idx).ToListAsync(), x => x.Kind == "htb" && x.Handle == 0x00010000);
    }

    [LinuxFact(Netns = true, Tools = ["tc"])]
    public async Task Htb_ClassesMadeByTc_ReadBackTyped()
    {
        using var ns = TestNetns.Create("hc");
        using var client = NetlinkClient.Open(ns.Name);
        int idx = await client.CreateVethAsync("c0", "c1");
        ns.Exec("tc qdisc add dev c0 root handle 1: htb default 10");
        ns.Exec("tc class add dev c0 parent 1: classid 1:1 htb rate 100mbit burst 20k");
        // 50gbit does not fit tc_ratespec.rate (32 bits of bytes/s): the kernel reports TCA_HTB_CEIL64.
        ns.Exec("tc class add dev c0 parent 1:1 classid 1:10 htb rate 10mbit ceil 50gbit prio 2 quantum 3000");
        string text = ns.Exec("tc class show dev c0");

        List<TcClass> classes = await client.GetTcClassesAsync(idx).ToListAsync();
        Assert.Equal(2, classes.Count);
        TcClass root = Assert.Single(classes, c => c.ClassId == 0x00010001);
        TcClass leaf = Assert.Single(classes, c => c.ClassId == 0x00010010);
        Assert.All(classes, c => Assert.Equal("htb", c.Kind));
        Assert.Equal(0xFFFFFFFFu, root.Parent);
        Assert.Equal(0x00010001u, leaf.Parent);
        Assert.Contains("class htb 1:1 root rate 100Mbit ceil 100Mbit", text, StringComparison.Ordinal);
        Assert.Equal(12_500_000ul, root.Htb!.RateBytesPerSecond);
        Assert.Equal(12_500_000ul, root.Htb.CeilBytesPerSecond);
        Assert.Equal(7u, root.Htb.Level); // sch_htb.c: a top inner class is TC_HTB_MAXDEPTH - 1
        // tc prints the burst it computes back from the same buffer ticks ("burst 20462b").
        ulong tcBurst = ulong.Parse(System.Text.RegularExpressions.Regex.Match(text, @"1:1 root .* burst (\d+)b").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange((double)root.Htb.BurstBytes, tcBurst * 0.99, tcBurst * 1.01);
        Assert.Contains("class htb 1:10 parent 1:1 prio 2 rate 10Mbit ceil 50Gbit", text, StringComparison.Ordinal);
        Assert.Equal(1_250_000ul, leaf.Htb!.RateBytesPerSecond);
        Assert.Equal(6_250_000_000ul, leaf.Htb.CeilBytesPerSecond);
        Assert.Equal(2u, leaf.Htb.Priority);
        Assert.Equal(3000u, leaf.Htb.Quantum);
        Assert.Equal(0u, leaf.Htb.Level);

        await client.DeleteTcClassAsync(idx, 0x00010010);
        Assert.DoesNotContain("1:10", ns.Exec("tc class show dev c0"), StringComparison.Ordinal);
        Assert.Single(await client.GetTcClassesAsync(idx).ToListAsync());
    }

    [LinuxFact(Netns = true, Tools = ["tc"])]
    public async Task Htb_ClassesMadeByUs_ReadBackTypedWithTheirOptions()
    {
        using var ns = TestNetns.Create("hd");
        using var client = NetlinkClient.Open(ns.Name);
        int idx = await client.CreateVethAsync("d0", "d1");
        await client.AddHtbQdiscAsync(idx, 0x00010000, defaultClass: 0x10);
        await client.AddHtbClassAsync(idx, new HtbClassOptions { Parent = 0x00010000, ClassId = 0x00010001, RateBytesPerSecond = 12_500_000, BurstBytes = 32 * 1024 });
        await client.AddHtbClassAsync(idx, new HtbClassOptions { Parent = 0x00010001, ClassId = 0x00010020, RateBytesPerSecond = 5_000_000_000, CeilBytesPerSecond = 6_000_000_000, Priority = 3 });
        Dictionary<uint, TcClass> byId = (await client.GetTcClassesAsync(idx).ToListAsync()).ToDictionary(c => c.ClassId);
        Assert.Equal(2, byId.Count);
        Assert.Equal(12_500_000ul, byId[0x00010001].Htb!.RateBytesPerSecond);
        Assert.InRange(byId[0x00010001].Htb!.BurstBytes, 32 * 1024 - 64ul, 32 * 1024 + 64ul);
        Assert.Equal(5_000_000_000ul, byId[0x00010020].Htb!.RateBytesPerSecond);
        Assert.Equal(6_000_000_000ul, byId[0x00010020].Htb!.CeilBytesPerSecond);
        Assert.Equal(3u, byId[0x00010020].Htb!.Priority);
        Assert.Equal(0x00010001u, byId[0x00010020].Parent);
        Assert.Contains("class htb 1:20 parent 1:1 prio 3 rate 40Gbit ceil 48Gbit", ns.Exec("tc class show dev d0"), StringComparison.Ordinal);
    }
}
