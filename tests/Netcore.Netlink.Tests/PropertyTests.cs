using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using FsCheck;
using FsCheck.Fluent;
using Netcore.Netlink.Core;

namespace Netcore.Netlink.Tests;

/// <summary>Seeded FsCheck properties: encode/decode round trips per message type and parser fuzzing.</summary>
public sealed class PropertyTests
{
    // Each case derives its object from a seed so a failure names a reproducible seed.
    private static Gen<Random> Rngs => Gen.Choose(int.MinValue, int.MaxValue).Select(s => new Random(s));

    private static IPNetwork RandomPrefix(Random r, bool v6)
    {
        int len = r.Next(0, v6 ? 129 : 33);
        byte[] b = new byte[v6 ? 16 : 4];
        r.NextBytes(b);
        for (int i = 0; i < b.Length * 8; i++)
            if (i >= len) b[i / 8] &= (byte)~(0x80 >> (i % 8));
        return new IPNetwork(new IPAddress(b), len);
    }

    private static IPAddress RandomAddress(Random r, bool v6)
    {
        byte[] b = new byte[v6 ? 16 : 4];
        r.NextBytes(b);
        return new IPAddress(b);
    }

    private static T ParseOne<T>(byte[] msg, MessageParser<T> parser)
    {
        var reader = new NetlinkMessageReader(msg);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.True(parser(m, out T value));
        Assert.False(reader.TryRead(out _));
        return value;
    }

    [Fact]
    public void Route_RoundTrips() => Properties.Check(Rngs, r =>
    {
        bool v6 = r.Next(2) == 0;
        var route = new Route
        {
            Destination = RandomPrefix(r, v6),
            Gateway = r.Next(2) == 0 ? RandomAddress(r, v6) : null,
            PreferredSource = r.Next(3) == 0 ? RandomAddress(r, v6) : null,
            OutputIndex = r.Next(2) == 0 ? r.Next(1, 100000) : null,
            Table = (uint)r.Next(1, int.MaxValue),
            Type = (RouteType)r.Next(1, 10),
            Protocol = (RouteProtocol)r.Next(0, 256),
            Scope = (RouteScope)r.Next(0, 256),
            Priority = r.Next(2) == 0 ? (uint)r.Next() : null,
            Tos = (byte)r.Next(256),
            Metrics = r.Next(2) == 0 ? new RouteMetrics { Mtu = (uint)r.Next(), AdvMss = r.Next(2) == 0 ? (uint)r.Next() : null } : null,
            NextHops = r.Next(3) == 0 ? [.. Enumerable.Range(0, r.Next(1, 5)).Select(_ => new NextHop(r.Next(2) == 0 ? RandomAddress(r, v6) : null, r.Next(1, 1000), r.Next(1, 257)) { Flags = (byte)r.Next(256) })] : null,
            NextHopId = r.Next(4) == 0 ? (uint)r.Next(1, int.MaxValue) : null,
        };
        Route back = ParseOne<Route>(Encoders.Message(Nl.RTM_NEWROUTE, 0, w => RouteCodec.Write(w, route)), RouteCodec.TryParse);
        Assert.Equal(route.Destination, back.Destination);
        Assert.Equal(route.Gateway, back.Gateway);
        Assert.Equal(route.PreferredSource, back.PreferredSource);
        Assert.Equal(route.OutputIndex, back.OutputIndex);
        Assert.Equal(route.Table, back.Table);
        Assert.Equal(route.Type, back.Type);
        Assert.Equal(route.Protocol, back.Protocol);
        Assert.Equal(route.Scope, back.Scope);
        Assert.Equal(route.Priority, back.Priority);
        Assert.Equal(route.Tos, back.Tos);
        Assert.Equal(route.Metrics, back.Metrics);
        Assert.Equal(route.NextHops ?? [], back.NextHops ?? []);
        Assert.Equal(route.NextHopId, back.NextHopId);
        Assert.Empty(back.UnknownAttributes);
    }, 2000);

    [Fact]
    public void HtbClass_RoundTrips() => Properties.Check(Rngs, r =>
    {
        // Rates past 32 bits go in TCA_HTB_RATE64/CEIL64 and must come back whole.
        ulong rate = r.Next(2) == 0 ? (ulong)r.Next(1000, int.MaxValue) : (ulong)r.NextInt64(1L << 32, 1L << 40);
        var o = new HtbClassOptions
        {
            Parent = (uint)r.Next(),
            ClassId = (uint)r.Next(),
            RateBytesPerSecond = rate,
            CeilBytesPerSecond = r.Next(2) == 0 ? null : rate + (ulong)r.Next(),
            BurstBytes = (uint)r.Next(1500, 1 << 20),
            Priority = (uint)r.Next(8),
        };
        byte[] msg = Encoders.Message(HtbCodec.RTM_NEWTCLASS, 0, w => HtbCodec.WriteClass(w, 7, o));
        TcClass back = ParseOne<TcClass>(msg, HtbCodec.TryParseClass);
        Assert.Equal(7, back.IfIndex);
        Assert.Equal("htb", back.Kind);
        Assert.Equal(o.ClassId, back.ClassId);
        Assert.Equal(o.Parent, back.Parent);
        Assert.Equal(o.RateBytesPerSecond, back.Htb!.RateBytesPerSecond);
        Assert.Equal(o.CeilBytesPerSecond ?? o.RateBytesPerSecond, back.Htb.CeilBytesPerSecond);
        Assert.Equal(o.Priority, back.Htb.Priority);
        // The burst travels as 64 ns ticks: it comes back within one tick's worth of bytes.
        Assert.InRange((double)back.Htb.BurstBytes, o.BurstBytes - (rate * 64e-9) - 1, o.BurstBytes + 1.0);
    }, 1000);

    [Fact]
    public void Route_UnsetOptionalFieldsReadBackAsNull()
    {
        // Route packs its optional numbers behind presence bits and its rare parts in a side object.
        var r = new Route { Destination = IPNetwork.Parse("10.1.0.0/16") };
        Assert.Null(r.OutputIndex);
        Assert.Null(r.Priority);
        Assert.Null(r.Scope);
        Assert.Null(r.NextHopId);
        Assert.Null(r.Metrics);
        Assert.Null(r.NextHops);
        Assert.Null(r.PreferredSource);
        Assert.Empty(r.UnknownAttributes);
        Assert.Equal(RouteTables.Main, r.Table);
        Assert.Equal(RouteType.Unicast, r.Type);
        Assert.Equal(RouteProtocol.Boot, r.Protocol);
        var z = new Route { Destination = IPNetwork.Parse("10.1.0.0/16"), OutputIndex = 0, Priority = 0, Scope = RouteScope.Universe, NextHopId = 0 };
        Assert.Equal(0, z.OutputIndex);
        Assert.Equal(0u, z.Priority);
        Assert.Equal(RouteScope.Universe, z.Scope);
        Assert.Equal(0u, z.NextHopId);
        var withSource = new Route { OutputIndex = 5, Priority = 7, Scope = RouteScope.Link, PreferredSource = IPAddress.Loopback };
        Assert.Equal(IPAddress.Loopback, withSource.PreferredSource);
        Assert.Equal(5, withSource.OutputIndex);
    }

    [Fact]
    public void ParsingAPlainDumpedRouteAllocatesOneSmallObject()
    {
        // What a route dump returns per route (RTA_TABLE, RTA_DST, RTA_OIF, RTA_GATEWAY): the Route
        // object only, its addresses held by value (issue: at most one allocation per route).
        byte[] msg = Encoders.Message(Nl.RTM_NEWROUTE, 0, w => RouteCodec.Write(w,
            new Route { Destination = IPNetwork.Parse("10.2.3.0/24"), Gateway = IPAddress.Parse("10.0.0.1"), OutputIndex = 3, Table = 200 }));
        var list = new Route[1000];
        Parse(msg, list, 10); // JIT
        long before = GC.GetAllocatedBytesForCurrentThread();
        Parse(msg, list, list.Length);
        long perRoute = (GC.GetAllocatedBytesForCurrentThread() - before) / list.Length;
        Assert.Equal(IPAddress.Parse("10.0.0.1"), list[999].Gateway);
        Assert.Equal(200u, list[999].Table);
        Assert.InRange(perRoute, 1, 112);

        static void Parse(byte[] msg, Route[] into, int n)
        {
            for (int i = 0; i < n; i++)
            {
                var reader = new NetlinkMessageReader(msg);
                reader.TryRead(out NetlinkMessage m);
                RouteCodec.TryParse(m, out into[i]);
            }
        }
    }

    [Fact]
    public void Address_RoundTrips() => Properties.Check(Rngs, r =>
    {
        bool v6 = r.Next(2) == 0;
        uint valid = (uint)r.Next(1, 100000);
        var a = new InterfaceAddress
        {
            IfIndex = r.Next(1, 100000),
            Address = RandomAddress(r, v6),
            PrefixLength = r.Next(0, v6 ? 129 : 33),
            Peer = r.Next(3) == 0 ? RandomAddress(r, v6) : null,
            Broadcast = !v6 && r.Next(2) == 0 ? RandomAddress(r, false) : null,
            Label = !v6 && r.Next(2) == 0 ? "e" + r.Next(1000) : null,
            Scope = (RouteScope)r.Next(256),
            Flags = (uint)r.Next(),
            ValidLifetime = r.Next(2) == 0 ? TimeSpan.FromSeconds(valid) : null,
        };
        a = a with { PreferredLifetime = a.ValidLifetime is null ? null : TimeSpan.FromSeconds(r.Next(0, (int)valid)) };
        InterfaceAddress back = ParseOne<InterfaceAddress>(Encoders.Message(Nl.RTM_NEWADDR, 0, w => AddressCodec.Write(w, a)), AddressCodec.TryParse);
        if (a.Peer is not null && a.Peer.Equals(a.Address))
            a = a with { Peer = null };
        if (a.Flags <= 0xFF)
            a = a with { Flags = a.Flags & 0xFF };
        Assert.Equal(a with { UnknownAttributes = back.UnknownAttributes }, back);
    }, 2000);

    [Fact]
    public void Rule_RoundTrips() => Properties.Check(Rngs, r =>
    {
        bool v6 = r.Next(2) == 0;
        bool l3 = r.Next(4) == 0;
        var rule = new Rule
        {
            Family = v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork,
            Priority = r.Next(2) == 0 ? (uint)r.Next() : null,
            From = r.Next(2) == 0 ? RandomPrefix(r, v6) : null,
            To = r.Next(2) == 0 ? RandomPrefix(r, v6) : null,
            FwMark = r.Next(2) == 0 ? (uint)r.Next() : null,
            FwMask = r.Next(2) == 0 ? (uint)r.Next() : null,
            InputInterface = r.Next(2) == 0 ? "i" + r.Next(100) : null,
            OutputInterface = r.Next(2) == 0 ? "o" + r.Next(100) : null,
            Table = l3 ? 0 : (uint)r.Next(1, int.MaxValue),
            L3mdev = l3,
            Action = l3 ? RuleAction.ToTable : (RuleAction)r.Next(1, 9),
            Protocol = (RouteProtocol)r.Next(256),
        };
        Rule back = ParseOne<Rule>(Encoders.Message(Nl.RTM_NEWRULE, 0, w => RuleCodec.Write(w, rule)), RuleCodec.TryParse);
        if (rule.Action != RuleAction.ToTable && !l3)
            rule = rule with { Table = rule.Table < 256 ? rule.Table : 0 };
        Assert.Equal(rule with { UnknownAttributes = back.UnknownAttributes }, back);
    }, 2000);

    [Fact]
    public void Neighbour_RoundTrips() => Properties.Check(Rngs, r =>
    {
        bool fdb = r.Next(2) == 0;
        byte[] mac = new byte[6];
        r.NextBytes(mac);
        var n = new Neighbour
        {
            IfIndex = r.Next(1, 100000),
            IsBridgeFdb = fdb,
            Destination = fdb && r.Next(2) == 0 ? null : RandomAddress(r, r.Next(2) == 0),
            LinkAddress = new PhysicalAddress(mac),
            State = (NeighbourState)r.Next(256),
            Flags = (NeighbourFlags)r.Next(256),
            Vlan = fdb && r.Next(2) == 0 ? (ushort)r.Next(1, 4095) : null,
            Vni = fdb && r.Next(2) == 0 ? (uint)r.Next(0, 1 << 24) : null,
            Port = fdb && r.Next(2) == 0 ? (ushort)r.Next(65536) : null,
            MasterIndex = r.Next(2) == 0 ? r.Next(1, 1000) : null,
        };
        Neighbour back = ParseOne<Neighbour>(Encoders.Message(Nl.RTM_NEWNEIGH, 0, w => NeighbourCodec.Write(w, n)), NeighbourCodec.TryParse);
        Assert.Equal(n with { UnknownAttributes = back.UnknownAttributes }, back);
    }, 2000);

    [Fact]
    public void LinkCreate_RoundTripsCommonFields() => Properties.Check(Rngs, r =>
    {
        string name = "l" + r.Next(100000);
        LinkSpec spec = r.Next(4) switch
        {
            0 => new VethSpec(name, "p" + r.Next(1000)),
            1 => new BridgeSpec(name) { Stp = r.Next(2) == 0 },
            2 => new VxlanSpec(name, (uint)r.Next(0, 1 << 24)) { Port = (ushort)r.Next(65536) },
            _ => new MacvlanSpec(name, r.Next(1, 100)),
        };
        spec = spec with { Mtu = r.Next(68, 65536), MasterIndex = r.Next(2) == 0 ? r.Next(1, 100) : null, TxQueueLength = r.Next(0, 10000) };
        Link back = ParseOne<Link>(Encoders.Message(Nl.RTM_NEWLINK, 0, w => LinkCodec.WriteCreate(w, spec)), LinkCodec.TryParse);
        Assert.Equal(spec.Name, back.Name);
        Assert.Equal(spec.Kind, back.Kind);
        Assert.Equal(spec.Mtu, back.Mtu);
        Assert.Equal(spec.MasterIndex, back.MasterIndex);
        Assert.Equal(spec.TxQueueLength, back.TxQueueLength);
    }, 1000);

    [Fact]
    public void Attributes_RoundTripThroughWriterAndReader() => Properties.Check(Rngs, r =>
    {
        var attrs = Enumerable.Range(0, r.Next(0, 20)).Select(_ =>
        {
            byte[] v = new byte[r.Next(0, 300)];
            r.NextBytes(v);
            return ((ushort)r.Next(0, 0x4000), v);
        }).ToList();
        using var w = new NetlinkWriter();
        foreach (var (t, v) in attrs)
            w.Bytes(t, v);
        var reader = new AttributeReader(w.WrittenSpan);
        foreach (var (t, v) in attrs)
        {
            Assert.True(reader.TryRead(out ushort type, out ReadOnlySpan<byte> value));
            Assert.Equal(t, type);
            Assert.True(value.SequenceEqual(v));
        }
        Assert.False(reader.TryRead(out _, out _));
    }, 1000);

    [Fact]
    public void ParserAcceptsLongerHeadersAndUnknownAttributes()
    {
        // A newer kernel may append fields to rtmsg (padded to 4) and send attributes we do not know.
        byte[] msg = Encoders.Message(Nl.RTM_NEWROUTE, 0, w =>
        {
            RouteCodec.Write(w, new Route { Destination = IPNetwork.Parse("10.0.0.0/8"), OutputIndex = 3 });
            w.U32(999, 0xdeadbeef);
        });
        Route r = ParseOne<Route>(msg, RouteCodec.TryParse);
        RawAttribute raw = Assert.Single(r.UnknownAttributes);
        Assert.Equal((ushort)999, raw.Type);
        Assert.Equal(IPNetwork.Parse("10.0.0.0/8"), r.Destination);
    }

    private static readonly byte[][] Seeds = [.. Encoders.All.Values.Select(f => f()), ErrorWithExtAck(), EthtoolLinkModesReply()];

    // ETHTOOL_MSG_LINKMODES_GET_REPLY as a veth sends it (family id 0x14 here is arbitrary).
    private static byte[] EthtoolLinkModesReply()
    {
        using var w = new NetlinkWriter();
        w.BeginMessage(0x14, 0, 1);
        w.Struct(new genlmsghdr { cmd = 4, version = 1 });
        int h = w.BeginNested(1);
        w.U32(1, 2);
        w.String(2, "m0");
        w.EndNested(h);
        w.U8(2, 0);
        w.U32(5, 10000);
        w.U8(6, 1);
        w.EndMessage();
        return w.WrittenSpan.ToArray();
    }

    [Fact]
    public void EthtoolLinkModesReplyParses()
    {
        var reader = new NetlinkMessageReader(EthtoolLinkModesReply());
        Assert.True(reader.TryRead(out NetlinkMessage m));
        EthtoolLinkModes lm = GenericNetlinkClient.ParseLinkModes(m.Attributes(4).Rest());
        Assert.Equal(new EthtoolLinkModes(10000, EthtoolDuplex.Full, false, null), lm);
    }

    private static byte[] ErrorWithExtAck()
    {
        using var w = new NetlinkWriter();
        w.BeginMessage(Nl.NLMSG_ERROR, Nl.NLM_F_CAPPED | Nl.NLM_F_ACK_TLVS, 1);
        w.Struct(new nlmsgerr { error = -95, msg = new nlmsghdr { nlmsg_len = 64, nlmsg_type = Nl.RTM_NEWLINK, nlmsg_seq = 1 } });
        w.String(Nl.NLMSGERR_ATTR_MSG, "Unknown device type");
        w.U32(Nl.NLMSGERR_ATTR_OFFS, 36);
        w.EndMessage();
        return w.WrittenSpan.ToArray();
    }

    private static void OnlyFormatErrors(byte[] input)
    {
        try
        {
            NetlinkParsers.ParseAll(input);
            NetlinkParsers.ParseGenericControl(input);
        }
        catch (NetlinkFormatException)
        {
        }
    }

    [Fact]
    public void Fuzz_RandomBytes_OnlyFormatException() => Properties.Check(Properties.Bytes(512), OnlyFormatErrors, 30_000);

    [Fact]
    public void Fuzz_MutatedMessages_OnlyFormatException() =>
        Properties.Check(Gen.Choose(0, Seeds.Length - 1).SelectMany(i => Properties.Mutations(Seeds[i])), OnlyFormatErrors, 70_000);

    [Fact]
    public void ExtAck_IsDecoded()
    {
        var reader = new NetlinkMessageReader(ErrorWithExtAck());
        Assert.True(reader.TryRead(out NetlinkMessage m));
        NetlinkException e = NetlinkSocket.ToException(m, "test")!;
        Assert.Equal(95, e.NativeErrorCode);
        Assert.Equal("EOPNOTSUPP", e.ErrnoName);
        Assert.Equal("Unknown device type", e.ExtendedAckMessage);
        Assert.Equal(36, e.ExtendedAckOffset);
    }
}
