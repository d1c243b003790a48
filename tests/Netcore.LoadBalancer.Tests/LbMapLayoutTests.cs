using System.Net;
using System.Net.Sockets;
using Netcore.LoadBalancer.DataPlane;
using Netcore.LoadBalancer.Maglev;

namespace Netcore.LoadBalancer.Tests;

public class LbMapLayoutTests
{
    private static string HeaderDir => Path.Combine(AppContext.BaseDirectory, "bpf");

    [LinuxFact(Tools = ["gcc"])]
    public void ManagedStructs_MatchLbH()
    {
        var errors = StructLayoutCheck.Compare(["lb.h"],
        [
            new StructLayoutSpec("struct lb_service_key", typeof(LbServiceKey), ("addr", "addr"), ("port", "port"), ("proto", "proto"), ("family", "family")),
            new StructLayoutSpec("struct lb_service", typeof(LbService), ("id", "id"), ("table_size", "table_size"), ("encap", "encap"), ("flags", "flags"), ("gue_port", "gue_port")),
            new StructLayoutSpec("struct lb_vip", typeof(LbVip), ("key", "key"), ("svc", "svc")),
            new StructLayoutSpec("struct lb_vip_bucket", typeof(LbVipBucket)),
            new StructLayoutSpec("struct lb_backend", typeof(LbBackend), ("addr", "addr"), ("family", "family"), ("flags", "flags"), ("csum_base", "csum_base"), ("src_v4", "src_v4"), ("gw_mac", "gw_mac"), ("mtu", "mtu"), ("service", "service"), ("encap", "encap"), ("gue_port", "gue_port"), ("max_inner", "max_inner"), ("ip_tail", "ip_tail")),
            new StructLayoutSpec("struct lb_flow4", typeof(LbFlow4), ("addrs", "addrs"), ("tag", "tag")),
            new StructLayoutSpec("struct lb_flow4_set", typeof(LbFlow4Set)),
            new StructLayoutSpec("struct lb_flow6", typeof(LbFlow6), ("saddr", "saddr0"), ("daddr", "daddr0"), ("tag", "tag"), ("hash", "hash")),
            new StructLayoutSpec("struct lb_flow6_set", typeof(LbFlow6Set)),
            new StructLayoutSpec("struct lb_config", typeof(LbConfig), ("gw_mac", "gw_mac"), ("mtu", "mtu"), ("src_v4", "src_v4"), ("src_v6", "src_v6"), ("hash_seed", "hash_seed"), ("icmp_rate", "icmp_rate")),
            new StructLayoutSpec("struct lb_stats", typeof(LbStats), ("packets", "packets"), ("bytes", "bytes"), ("drops", "drops"), ("encap_errors", "encap_errors")),
        ], $"-I{HeaderDir}");
        Assert.Empty(errors);
    }

    [LinuxFact(Tools = ["gcc"])]
    public void Constants_MatchLbH()
    {
        var v = CHeaderProbe.Evaluate(["lb.h"],
        [
            "LB_MAX_SERVICES", "LB_MAX_BACKENDS", "LB_NO_BACKEND", "LB_ENCAP_IPIP", "LB_ENCAP_GUE", "LB_FAMILY_V4", "LB_FAMILY_V6",
            "LB_G_PASS", "LB_G_FRAGMENT", "LB_G_MALFORMED", "LB_G_EXTHDR", "LB_DEFAULT_TABLE_SIZE", "LB_BE_F_DOWN",
            "LB_VIP_BUCKETS", "LB_VIP_WAYS", "LB_VIP_HASH_MUL", "LB_FLOW_SET_BITS", "LB_FLOW_SETS", "LB_FLOW6_SET_BITS", "LB_FLOW6_SETS", "LB_FLOW6_KEY",
            "LB_FLOW_SET_MUL", "LB_LAYOUT_VERSION",
            "LB_FLOW4_UDP", "LB_FLOW4_VALID", "LB_FLOW4_CHECK", "LB_FLOW4_KEY", "LB_SVC_RETIRED", "LB_SVC_STATS_ENTRIES",
            "LB_G_TOO_BIG", "LB_G_TOO_BIG_LIMITED", "LB_G_COUNT", "LB_ICMP4_QUOTE", "LB_ICMP6_QUOTE",
            "LB_GUE_CHAIN_LEN", "LB_GUE_CHAIN6_LEN", "LB_RING_FIRST(0x0abc0123u)", "LB_RING_SECOND(0x0abc0123u)",
        ], $"-I{HeaderDir}");
        Assert.Equal(LbMaps.MaxServices, v["LB_MAX_SERVICES"]);
        Assert.Equal(LbMaps.MaxBackends, v["LB_MAX_BACKENDS"]);
        Assert.Equal(LbMaps.NoBackend, (uint)v["LB_NO_BACKEND"]);
        Assert.Equal((long)Encapsulation.Ipip, v["LB_ENCAP_IPIP"]);
        Assert.Equal((long)Encapsulation.Gue, v["LB_ENCAP_GUE"]);
        Assert.Equal(LbMaps.FamilyV4, v["LB_FAMILY_V4"]);
        Assert.Equal(LbMaps.FamilyV6, v["LB_FAMILY_V6"]);
        Assert.Equal((long)LbGlobalCounter.Pass, v["LB_G_PASS"]);
        Assert.Equal((long)LbGlobalCounter.Fragment, v["LB_G_FRAGMENT"]);
        Assert.Equal((long)LbGlobalCounter.Malformed, v["LB_G_MALFORMED"]);
        Assert.Equal((long)LbGlobalCounter.ExtensionHeader, v["LB_G_EXTHDR"]);
        Assert.Equal(MaglevTableBuilder.DefaultSize, v["LB_DEFAULT_TABLE_SIZE"]);
        Assert.Equal(LbMaps.BackendDown, v["LB_BE_F_DOWN"]);
        Assert.Equal(LbMaps.VipBuckets, v["LB_VIP_BUCKETS"]);
        Assert.Equal(LbMaps.VipWays, v["LB_VIP_WAYS"]);
        Assert.Equal(LbMaps.VipHashMul, (uint)v["LB_VIP_HASH_MUL"]);
        Assert.Equal(LbMaps.FlowSetBits, v["LB_FLOW_SET_BITS"]);
        Assert.Equal(LbMaps.FlowSets, v["LB_FLOW_SETS"]);
        Assert.Equal(LbMaps.Flow6SetBits, v["LB_FLOW6_SET_BITS"]);
        Assert.Equal(1 << LbMaps.Flow6SetBits, v["LB_FLOW6_SETS"]);
        Assert.Equal(LbMaps.Flow6Key, unchecked((ulong)v["LB_FLOW6_KEY"]));
        Assert.Equal(LbMaps.FlowSetMul, unchecked((ulong)v["LB_FLOW_SET_MUL"]));
        Assert.Equal(LbMaps.LayoutVersion, (uint)v["LB_LAYOUT_VERSION"]);
        Assert.Equal(LbMaps.GueChainLength, v["LB_GUE_CHAIN_LEN"]);
        Assert.Equal(LbMaps.GueChain6Length, v["LB_GUE_CHAIN6_LEN"]);
        Assert.Equal(LbMaps.RingFirst(0x0abc0123u), (uint)v["LB_RING_FIRST(0x0abc0123u)"]);
        Assert.Equal(LbMaps.RingSecond(0x0abc0123u), (uint)v["LB_RING_SECOND(0x0abc0123u)"]);
        Assert.Equal(LbMaps.Flow4Udp, unchecked((ulong)v["LB_FLOW4_UDP"]));
        Assert.Equal(LbMaps.Flow4Valid, unchecked((ulong)v["LB_FLOW4_VALID"]));
        Assert.Equal(LbMaps.Flow4Check, unchecked((ulong)v["LB_FLOW4_CHECK"]));
        Assert.Equal(LbMaps.Flow4Key, unchecked((ulong)v["LB_FLOW4_KEY"]));
        Assert.Equal(LbMaps.ServiceRetired, v["LB_SVC_RETIRED"]);
        Assert.Equal(2 * LbMaps.MaxServices, v["LB_SVC_STATS_ENTRIES"]);
        Assert.Equal((long)LbGlobalCounter.TooBig, v["LB_G_TOO_BIG"]);
        Assert.Equal((long)LbGlobalCounter.TooBigLimited, v["LB_G_TOO_BIG_LIMITED"]);
        Assert.Equal(Enum.GetValues<LbGlobalCounter>().Length, v["LB_G_COUNT"]);
        Assert.Equal(LbMaps.Icmp4Quote, v["LB_ICMP4_QUOTE"]);
        Assert.Equal(LbMaps.Icmp6Quote, v["LB_ICMP6_QUOTE"]);
    }

    [LinuxFact(Tools = ["gcc"])]
    public void HashFunctions_MatchLbH()
    {
        // The control plane places services and finds flows with the same functions as lb.c.
        var keys = new[]
        {
            LbServiceKey.Create(IPAddress.Parse("192.0.2.10"), 80, ProtocolType.Tcp),
            LbServiceKey.Create(IPAddress.Parse("10.255.0.1"), 65535, ProtocolType.Udp),
            LbServiceKey.Create(IPAddress.Parse("2001:db8::10"), 443, ProtocolType.Udp),
            LbServiceKey.Create(IPAddress.Parse("fe80::1:2:3:4"), 1, ProtocolType.Tcp),
        };
        (ulong S0, ulong S1, ulong D0, ulong D1, uint Ports)[] flows6 =
        [
            (0, 0, 0, 0, 0), (0xb80d0120UL, 0x0100000000000000UL, 0xb80d0120UL, 0x1000000000000000UL, 0xbb01_409c),
            (ulong.MaxValue, ulong.MaxValue, ulong.MaxValue, ulong.MaxValue, uint.MaxValue), (1, 2, 3, 4, 5),
        ];
        var exprs = new List<string>();
        foreach (var k in keys)
        {
            byte[] b = LbMaps.Bytes(k);
            var w = Enumerable.Range(0, 5).Select(i => BitConverter.ToUInt32(b, i * 4)).ToArray();
            exprs.Add($"lb_vip_bucket_of({w[0]}u, {w[1]}u, {w[2]}u, {w[3]}u, {w[4]}u)");
        }
        foreach (var (s0, s1, d0, d1, p) in flows6)
        {
            exprs.Add($"lb_flow6_mix({s0}ull, {s1}ull, {d0}ull, {d1}ull, {p}u)");
            exprs.Add($"lb_flow6_set_of(lb_flow6_mix({s0}ull, {s1}ull, {d0}ull, {d1}ull, {p}u))");
        }
        (ulong Addrs, uint Ports)[] flows4 = [(0, 0), (0x0a02_00c0_0764_33c6UL, 0x5000_409c), (ulong.MaxValue, uint.MaxValue), (1, 0x8000_0000)];
        foreach (var (a, p) in flows4)
        {
            exprs.Add($"lb_flow4_mix({a}ull, {p}u)");
            exprs.Add($"lb_flow4_set_of(lb_flow4_mix({a}ull, {p}u))");
            exprs.Add($"lb_flow4_check(lb_flow4_mix({a}ull, {p}u))");
            exprs.Add($"lb_flow4_entropy(lb_flow4_check(lb_flow4_mix({a}ull, {p}u)))");
        }
        var v = CHeaderProbe.Evaluate(["lb.h"], exprs, $"-I{HeaderDir}");
        for (int i = 0; i < keys.Length; i++)
            Assert.Equal(LbMaps.VipBucket(keys[i]), (uint)v[exprs[i]]);
        int at = keys.Length;
        foreach (var (s0, s1, d0, d1, p) in flows6)
        {
            ulong m = LbMaps.Flow6Mix(s0, s1, d0, d1, p);
            Assert.Equal(m, unchecked((ulong)v[exprs[at++]]));
            Assert.Equal(LbMaps.Flow6Set(m), (uint)v[exprs[at++]]);
        }
        foreach (var (a, p) in flows4)
        {
            ulong m = LbMaps.Flow4Mix(a, p);
            Assert.Equal(m, unchecked((ulong)v[exprs[at++]]));
            Assert.Equal(LbMaps.Flow4Set(m), (uint)v[exprs[at++]]);
            Assert.Equal(LbMaps.Flow4CheckBits(m), unchecked((ulong)v[exprs[at++]]));
            Assert.Equal(LbMaps.Flow4Entropy(LbMaps.Flow4CheckBits(m)), (uint)v[exprs[at++]]);
        }
    }

    [Fact]
    public void Encodings_AreNetworkOrderWhereTheHeaderSaysBe()
    {
        var key = LbMaps.Bytes(LbServiceKey.Create(IPAddress.Parse("192.0.2.10"), 80, ProtocolType.Tcp));
        Assert.Equal("c0 00 02 0a 00 00 00 00 00 00 00 00 00 00 00 00 00 50 06 04", LbBpf.Hex(key));
        var key6 = LbMaps.Bytes(LbServiceKey.Create(IPAddress.Parse("2001:db8::1"), 443, ProtocolType.Udp));
        Assert.Equal("20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 01 bb 11 06", LbBpf.Hex(key6));
        var svc = LbMaps.Bytes(LbService.Create(3, 65537, Encapsulation.Gue, 6080));
        Assert.Equal("03 00 00 00 01 00 01 00 02 00 17 c0", LbBpf.Hex(svc));
        var cfg = LbMaps.Bytes(LbConfig.Create([1, 2, 3, 4, 5, 6], IPAddress.Parse("10.0.0.1"), IPAddress.Parse("2001:db8::2"), 1500, 7, icmpRate: 300));
        Assert.Equal("01 02 03 04 05 06 dc 05 0a 00 00 01 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02 07 00 00 00 2c 01 00 00", LbBpf.Hex(cfg));
        Assert.Throws<ArgumentException>(() => LbServiceKey.Create(IPAddress.Loopback, 1, ProtocolType.Icmp));
        Assert.Throws<ArgumentOutOfRangeException>(() => LbService.Create(LbMaps.MaxServices, 13, Encapsulation.Ipip));
        Assert.Throws<ArgumentException>(() => LbConfig.Create([1, 2, 3, 4, 5, 6], IPAddress.IPv6Loopback, null, 0, 0));
    }

    [Fact]
    public void BackendTemplate_DerivesChecksumBaseTailAndLargestInnerPacket()
    {
        var cfg = LbConfig.Create([1, 2, 3, 4, 5, 6], IPAddress.Parse("10.0.0.1"), IPAddress.Parse("2001:db8::2"), 1500, 7);
        var gue = LbService.Create(3, 13, Encapsulation.Gue, 6080);
        var ipip = LbService.Create(3, 13, Encapsulation.Ipip);
        var v4 = LbBackend.Create(IPAddress.Parse("10.0.0.7"), 3).WithConfig(cfg).WithService(ipip).WithTemplate();
        Assert.Equal(1480, v4.max_inner);                                   // 1500 - outer IPv4
        // Bytes 26-31 of the outer frame: source 10.0.0.1, first half of 10.0.0.7 (checksum bytes 24-25 zero).
        Assert.Equal("00 00 0a 00 00 01 0a 00", LbBpf.Hex(BitConverter.GetBytes(v4.ip_tail)));
        // RFC 1071 sum of 0x4500, 0x4000, 0x4000 (TTL), both addresses, as lb.c reads them (little-endian words).
        uint sum = 0x0045 + 0x0040 + 0x0040 + 0x000a + 0x0100 + 0x000a + 0x0700;
        Assert.Equal((ushort)sum, v4.csum_base);
        // 1500 - 20 - 8 - 4, and 4 bytes kept for a second hop (lb.h LB_GUE_CHAIN_LEN)
        Assert.Equal(1464, LbBackend.Create(IPAddress.Parse("10.0.0.7"), 3).WithConfig(cfg).WithService(gue).WithTemplate().max_inner);
        var v6 = LbBackend.Create(IPAddress.Parse("2001:db8::8"), 3).WithConfig(cfg).WithService(gue).WithTemplate();
        Assert.Equal(1432, v6.max_inner);                                   // 1500 - 40 - 8 - 4, and 16 kept for an IPv6 second hop (LB_GUE_CHAIN6_LEN)
        Assert.Equal(0UL, v6.ip_tail);
        var tiny = LbConfig.Create([1, 2, 3, 4, 5, 6], null, null, 30, 7);
        Assert.Equal(0, LbBackend.Create(IPAddress.Parse("2001:db8::8"), 3).WithConfig(tiny).WithTemplate().max_inner); // nothing fits
        var none = LbConfig.Create([1, 2, 3, 4, 5, 6], null, null, 0, 7);
        Assert.Equal(ushort.MaxValue, LbBackend.Create(IPAddress.Parse("10.0.0.7"), 3).WithConfig(none).WithTemplate().max_inner); // no check
    }

    [Fact]
    public void RingValues_MapTableIndicesToBackendIds()
    {
        using var t = new MaglevTableBuilder(13).Build([new("a", 1), new("b", 0), new("c", 1)]);
        uint[] ring = LbMaps.RingValues(t, [40, 41, 42]);
        Assert.All(ring, v => Assert.True(v is 40 or 42));
        using var none = new MaglevTableBuilder(13).Build([new("a", 0)]);
        Assert.All(LbMaps.RingValues(none, [40]), v => Assert.Equal(LbMaps.NoBackend, v));
    }
}
