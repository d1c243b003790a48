using System.Net;
using System.Text.Json.Nodes;
using Netcore.Interconnect.Config;
using Netcore.Interconnect.Lab;

namespace Netcore.Interconnect.Tests;

/// <summary>The JSON configuration and its validation rules.</summary>
public sealed class ConfigTests
{
    private static string ExampleJson => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "interconnect.example.json"));

    [Fact]
    public void Example_ParsesWithTheDocumentedValues()
    {
        var c = InterconnectConfig.Parse(ExampleJson);
        Assert.Equal(65000u, c.Asn);
        Assert.Equal(IPAddress.Parse("10.10.0.1"), c.RouterId);
        Assert.Equal([IPNetwork.Parse("10.10.0.0/24"), IPNetwork.Parse("fd10::/64")], c.Originate);
        Assert.Equal(254u, c.Table);
        Assert.Equal((byte)199, c.Protocol);
        Assert.Equal(TimeSpan.FromSeconds(90), c.HoldTime);
        Assert.Equal(3, c.Tunnels.Count);
        var pop1 = c.Tunnels[0];
        Assert.Equal(TunnelKind.Vxlan, pop1.Kind);
        Assert.Equal(101u, pop1.Vni);
        Assert.Equal((ushort)4789, pop1.Port);
        Assert.Equal(IPNetwork.Parse("169.254.1.0/31"), pop1.InnerNetwork);
        Assert.Equal(InterconnectConfig.Primary, pop1.Preference);
        Assert.Equal(InterconnectConfig.Backup, c.Tunnels[1].Preference);
        Assert.Equal(new BfdSettings(true, TimeSpan.FromMilliseconds(100), 3), pop1.Bfd);
        Assert.Equal(100, pop1.Import.MaxPrefixes);
        Assert.Equal(50, pop1.Import.MaxPrefixesIPv6);
        Assert.Equal(IPNetwork.Parse("fd00:1::/127"), pop1.InnerNetwork6);
        Assert.Equal(100, c.Tunnels[1].Import.MaxPrefixesIPv6);   // a number: each family
        Assert.False(c.Tunnels[2].CarriesIPv6);
        var gre = c.Tunnels[2];
        Assert.Equal(TunnelKind.Gre, gre.Kind);
        Assert.Equal(7u, gre.Key);
        Assert.Equal(1476, gre.Mtu);         // default: 1500 - 20 (IPv4) - 4 (GRE)
        Assert.Null(gre.Import.MaxPrefixes);
    }

    [Fact]
    public void LabConfig_IsValid_AndEqualPreferencesAreAllowed()
    {
        var c = InterconnectConfig.Parse(LabTopology.SiteConfig(150, 150, bfd: false));
        Assert.All(c.Tunnels, t => Assert.Equal(150u, t.Preference));
        Assert.All(c.Tunnels, t => Assert.False(t.Bfd.Enabled));
    }

    [Theory]
    [InlineData(TunnelKind.Vxlan, "192.0.2.1", 1450)]   // RFC 7348 4: 50 bytes over IPv4
    [InlineData(TunnelKind.Vxlan, "2001:db8::1", 1430)]
    [InlineData(TunnelKind.Gre, "192.0.2.1", 1476)]
    [InlineData(TunnelKind.Gre, "2001:db8::1", 1456)]
    [InlineData(TunnelKind.Ipip, "192.0.2.1", 1480)]
    public void DefaultMtu_FitsA1500ByteUnderlay(TunnelKind kind, string local, int mtu) =>
        Assert.Equal(mtu, InterconnectConfig.DefaultMtu(kind, IPAddress.Parse(local)));

    [Fact]
    public void Ipv6OnlyTunnel_PeersOverIPv6_AndCarriesIPv4WithIPv6NextHops()
    {
        var c = InterconnectConfig.Parse(LabTopology.SiteConfig(200, 100, true, ipv6Only: true));
        var t = c.Tunnels[0];
        Assert.True(t.IPv6Only);
        Assert.Null(t.InnerLocal);
        Assert.Null(t.InnerNetwork);
        Assert.Equal(System.Net.Sockets.AddressFamily.InterNetworkV6, t.Peering);
        Assert.Equal(IPAddress.Parse("fd00:1::"), t.SessionLocal);
        Assert.Equal(IPAddress.Parse("fd00:1::1"), t.SessionPeer);
        // RFC 8950: the IPv4 routes' gateway and the site's IPv4 NEXT_HOP are the inner IPv6 addresses.
        Assert.Equal(IPAddress.Parse("fd00:1::1"), t.GatewayFor(System.Net.Sockets.AddressFamily.InterNetwork));
        Assert.Equal(IPAddress.Parse("fd00:1::"), t.NextHopFor(System.Net.Sockets.AddressFamily.InterNetwork));
        // The peering defaults to IPv6 without "peering" too.
        var root = JsonNode.Parse(LabTopology.SiteConfig(200, 100, true, ipv6Only: true))!.AsObject();
        root["tunnels"]![0]!.AsObject().Remove("peering");
        Assert.Equal(System.Net.Sockets.AddressFamily.InterNetworkV6, InterconnectConfig.Parse(root.ToJsonString()).Tunnels[0].Peering);
        // A dual-stack tunnel keeps IPv4 next hops.
        var dual = InterconnectConfig.Parse(LabTopology.SiteConfig(200, 100, true, peering6: true)).Tunnels[0];
        Assert.False(dual.IPv6Only);
        Assert.Equal(IPAddress.Parse("169.254.1.1"), dual.GatewayFor(System.Net.Sockets.AddressFamily.InterNetwork));
    }

    /// <summary>IPv6-only tunnels: each edit (fields set to JSON values, null removes) breaks one rule; the error names the field.</summary>
    [Theory]
    [InlineData("peering=\"ipv4\"", "tunnels[0].peering")]                                  // no inner IPv4 address to peer from
    [InlineData("innerLocal=\"169.254.1.0/31\"", "tunnels[0].innerPeer")]                   // innerLocal and innerPeer together
    [InlineData("innerPeer=\"169.254.1.1\"", "tunnels[0].innerLocal")]
    [InlineData("innerLocal6=null;innerPeer6=null", "tunnels[0].innerLocal")]                  // no inner address at all
    [InlineData("innerPeer6=null", "tunnels[0].innerPeer6")]                                   // RFC 8950 next hops need the PoP's address
    [InlineData("innerLocal6=null", "tunnels[0].innerLocal6")]
    [InlineData("mtu=1279", "tunnels[0].mtu")]                                                 // RFC 8200 5: the tunnel carries IPv6
    [InlineData("innerLocal6=\"fe80::/127\"", "tunnels[0].innerLocal6")]                    // no link-local next hops
    public void Ipv6OnlyTunnel_BrokenRule_IsRejected_NamingTheField(string edits, string field)
    {
        var root = JsonNode.Parse(LabTopology.SiteConfig(200, 100, true, ipv6Only: true))!.AsObject();
        var t0 = root["tunnels"]![0]!.AsObject();
        foreach (string edit in edits.Split(';'))
        {
            string[] kv = edit.Split('=', 2);
            if (kv[1] == "null")
                t0.Remove(kv[0]);
            else
                t0[kv[0]] = JsonNode.Parse(kv[1]);
        }
        var e = Assert.Throws<InterconnectConfigException>(() => InterconnectConfig.Parse(root.ToJsonString()));
        Assert.Equal(field, e.Field);
    }

    /// <summary>Each edit breaks one rule; the error names the field.</summary>
    [Theory]
    [InlineData("$.asn", "0", "asn")]                                       // RFC 7607
    [InlineData("$.asn", "23456", "asn")]                                   // RFC 6793 AS_TRANS
    [InlineData("$.asn", "4294967295", "asn")]                              // RFC 7300
    [InlineData("$.routerId", "\"0.0.0.0\"", "routerId")]                   // RFC 6286 2.1
    [InlineData("$.routerId", "\"2001:db8::1\"", "routerId")]
    [InlineData("$.table", "255", "table")]                                 // RT_TABLE_LOCAL
    [InlineData("$.table", "0", "table")]
    [InlineData("$.protocol", "4", "protocol")]                             // RTPROT_STATIC and below
    [InlineData("$.protocol", "300", "protocol")]
    [InlineData("$.holdTimeSeconds", "2", "holdTimeSeconds")]               // RFC 4271 4.2
    [InlineData("$.originate", "[\"10.10.0.1/24\"]", "originate[0]")]       // RFC 4632 host bits
    [InlineData("$.originate", "[\"0.0.0.0/0\"]", "originate[0]")]
    [InlineData("$.tunnels", "[]", "tunnels")]
    [InlineData("$.bogus", "1", "$.bogus")]
    [InlineData("t0.name", "\"averyveryverylongname\"", "tunnels[0].name")]  // IFNAMSIZ
    [InlineData("t0.name", "\"a/b\"", "tunnels[0].name")]
    [InlineData("t1.name", "\"pop1\"", "tunnels[1].name")]                  // duplicate
    [InlineData("t0.kind", "\"geneve\"", "tunnels[0].kind")]
    [InlineData("t0.kind", "5", "tunnels[0].kind")]                         // not a string
    [InlineData("t0.local", "\"nope\"", "tunnels[0].local")]
    [InlineData("t0.vni", "16777216", "tunnels[0].vni")]                    // RFC 7348 5: 24 bits
    [InlineData("t0.vni", "null", "tunnels[0].vni")]
    [InlineData("t1.vni", "101", "tunnels[1].vni")]                         // same VNI and port twice
    [InlineData("t0.key", "5", "tunnels[0].key")]                           // a key on vxlan
    [InlineData("t0.remote", "\"2001:db8::2\"", "tunnels[0].remote")]       // family mismatch
    [InlineData("t0.remote", "\"224.0.0.5\"", "tunnels[0].remote")]         // point to point: unicast
    [InlineData("t0.port", "0", "tunnels[0].port")]
    [InlineData("t0.innerLocal", "\"169.254.1.0\"", "tunnels[0].innerLocal")]
    [InlineData("t0.innerLocal", "\"169.254.1.0/32\"", "tunnels[0].innerLocal")]  // no room for a peer
    [InlineData("t0.innerPeer", "\"169.254.9.1\"", "tunnels[0].innerPeer")] // not on the link (RFC 5881)
    [InlineData("t0.innerPeer", "\"169.254.1.0\"", "tunnels[0].innerPeer")] // our own address
    [InlineData("t1.innerLocal", "\"169.254.2.0/22\"", "tunnels[1].innerLocal")]  // overlaps pop1
    [InlineData("t0.mtu", "67", "tunnels[0].mtu")]                          // RFC 791 minimum 68
    [InlineData("t0.peerAsn", "65000", "tunnels[0].peerAsn")]               // eBGP only
    [InlineData("t0.peerAsn", "0", "tunnels[0].peerAsn")]
    [InlineData("t0.preference", "\"best\"", "tunnels[0].preference")]
    [InlineData("t0.bfd", "{\"multiplier\": 0}", "tunnels[0].bfd.multiplier")]   // RFC 5880 4.1
    [InlineData("t0.bfd", "{\"multiplier\": 256}", "tunnels[0].bfd.multiplier")]
    [InlineData("t0.bfd", "{\"intervalMs\": 5}", "tunnels[0].bfd.intervalMs")]
    [InlineData("t0.import", "{\"allow\": [\"10.20.0.0/16 le 8\"]}", "tunnels[0].import.allow[0]")]
    [InlineData("t0.import", "{\"allow\": [\"10.20.0.0/16\"], \"maxPrefixes\": 0}", "tunnels[0].import.maxPrefixes")]
    [InlineData("t0.import", "{\"maxPrefixes\": {\"ipv4\": 5, \"ipv6\": 0}}", "tunnels[0].import.maxPrefixes")]
    [InlineData("t0.import", "{\"maxPrefixes\": {\"ipv7\": 5}}", "tunnels[0].import.maxPrefixes.ipv7")]
    [InlineData("t0.import", "{\"allow\": [\"fd20::/32 le 16\"]}", "tunnels[0].import.allow[0]")]   // le below the prefix length
    [InlineData("t0.import", "{\"allow\": [\"fd20::/32 le 129\"]}", "tunnels[0].import.allow[0]")]
    [InlineData("t0.import", "{\"allow\": [\"fd20::1/64\"]}", "tunnels[0].import.allow[0]")]      // RFC 4632 host bits, IPv6 too
    // IPv6 over the tunnels.
    [InlineData("t0.innerPeer6", "null", "tunnels[0].innerPeer6")]                          // both or neither (RFC 2545 3)
    [InlineData("t0.innerLocal6", "\"fd00:1::\"", "tunnels[0].innerLocal6")]              // ADDRESS/LENGTH
    [InlineData("t0.innerLocal6", "\"169.254.7.0/31\"", "tunnels[0].innerLocal6")]        // not IPv6
    [InlineData("t0.innerLocal6", "\"fe80::/127\"", "tunnels[0].innerLocal6")]            // link-local (RFC 4291 2.5.6)
    [InlineData("t0.innerPeer6", "\"ff02::1\"", "tunnels[0].innerPeer6")]                 // multicast
    [InlineData("t0.innerLocal6", "\"fd00:1::/128\"", "tunnels[0].innerLocal6")]          // RFC 6164: /127 at most
    [InlineData("t0.innerLocal6", "\"fd00:1::/48\"", "tunnels[0].innerLocal6")]           // /64 at least
    [InlineData("t0.innerPeer6", "\"fd00:9::1\"", "tunnels[0].innerPeer6")]               // not on the link (RFC 5881)
    [InlineData("t0.innerPeer6", "\"fd00:1::\"", "tunnels[0].innerPeer6")]                // our own address
    [InlineData("t0.innerLocal6", "\"fd00:1::/64\"", "tunnels[0].innerLocal6")]           // Subnet-Router anycast (RFC 4291 2.6.1)
    [InlineData("t0.mtu", "1279", "tunnels[0].mtu")]                                        // RFC 8200 5: IPv6 needs 1280
    [InlineData("t0.peering", "\"ipx\"", "tunnels[0].peering")]
    [InlineData("$.apiToken", "\"two words\"", "apiToken")]                               // RFC 6750 2.1 b64token
    [InlineData("$.apiToken", "\"\"", "apiToken")]
    public void BrokenRule_IsRejected_NamingTheField(string where, string value, string field)
    {
        var root = JsonNode.Parse(LabTopology.SiteConfig(200, 100, true))!.AsObject();
        JsonNode? v = JsonNode.Parse(value);
        if (where.StartsWith("$.", StringComparison.Ordinal))
            root[where[2..]] = v;
        else
            root["tunnels"]![where[1] - '0']!.AsObject()[where[3..]] = v;
        var e = Assert.Throws<InterconnectConfigException>(() => InterconnectConfig.Parse(root.ToJsonString()));
        Assert.Equal(field, e.Field);
    }

    [Fact]
    public void IpipWithIpv6Underlay_IsRejected_Rfc2003()
    {
        var root = JsonNode.Parse(LabTopology.SiteConfig(200, 100, true))!.AsObject();
        var t = root["tunnels"]![0]!.AsObject();
        t["kind"] = "ipip";
        t.Remove("vni");
        t["local"] = "2001:db8::1";
        t["remote"] = "2001:db8::2";
        var e = Assert.Throws<InterconnectConfigException>(() => InterconnectConfig.Parse(root.ToJsonString()));
        Assert.Equal("tunnels[0].local", e.Field);
        Assert.Contains("RFC 2003", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LabConfig_CarriesIPv6_OnAnIPv4Peering_WithLimitsPerFamily()
    {
        var c = InterconnectConfig.Parse(LabTopology.SiteConfig(200, 100, true, maxPrefixes1: 7, maxPrefixes1v6: 3, apiToken: "s3cr3t-T0ken"));
        var pop1 = c.Tunnels[0];
        Assert.True(pop1.CarriesIPv6);
        Assert.Equal(IPAddress.Parse("fd00:1::"), pop1.InnerLocal6);
        Assert.Equal(IPNetwork.Parse("fd00:1::/127"), pop1.InnerNetwork6);
        Assert.Equal(System.Net.Sockets.AddressFamily.InterNetwork, pop1.Peering);
        Assert.Equal(IPAddress.Parse("169.254.1.1"), pop1.SessionPeer);
        Assert.Equal(IPAddress.Parse("fd00:1::1"), pop1.GatewayFor(System.Net.Sockets.AddressFamily.InterNetworkV6));
        Assert.Equal(7, pop1.Import.MaxFor(System.Net.Sockets.AddressFamily.InterNetwork));
        Assert.Equal(3, pop1.Import.MaxFor(System.Net.Sockets.AddressFamily.InterNetworkV6));
        Assert.Contains(IPNetwork.Parse("fd10::/64"), c.Originate);
        Assert.Equal("s3cr3t-T0ken", c.ApiToken);
    }

    [Fact]
    public void Ipv6Peering_UsesTheInnerIPv6Addresses_AndNeedsThem()
    {
        var root = JsonNode.Parse(LabTopology.SiteConfig(200, 100, true))!.AsObject();
        root["tunnels"]![0]!["peering"] = "ipv6";
        var t = InterconnectConfig.Parse(root.ToJsonString()).Tunnels[0];
        Assert.Equal(IPAddress.Parse("fd00:1::"), t.SessionLocal);
        Assert.Equal(IPAddress.Parse("fd00:1::1"), t.SessionPeer);
        // A number for maxPrefixes limits each family on its own.
        root["tunnels"]![0]!["import"] = JsonNode.Parse("{\"allow\": [\"fd20::/32 le 64\"], \"maxPrefixes\": 4}");
        Assert.Equal(4, InterconnectConfig.Parse(root.ToJsonString()).Tunnels[0].Import.MaxPrefixesIPv6);
        foreach (string key in new[] { "innerLocal6", "innerPeer6" })
            root["tunnels"]![0]!.AsObject().Remove(key);
        var e = Assert.Throws<InterconnectConfigException>(() => InterconnectConfig.Parse(root.ToJsonString()));
        Assert.Equal("tunnels[0].peering", e.Field);
    }

    /// <summary>An IPv6 site prefix needs a tunnel with an inner IPv6 address to be its next hop (RFC 2545 3).</summary>
    [Fact]
    public void Ipv6Originate_WithoutAnIPv6Tunnel_IsRejected()
    {
        var root = JsonNode.Parse(LabTopology.SiteConfig(200, 100, true))!.AsObject();
        foreach (var t in root["tunnels"]!.AsArray())
            foreach (string key in new[] { "innerLocal6", "innerPeer6" })
                t!.AsObject().Remove(key);
        var e = Assert.Throws<InterconnectConfigException>(() => InterconnectConfig.Parse(root.ToJsonString()));
        Assert.Equal("originate[1]", e.Field);
        Assert.Contains("RFC 2545", e.Message, StringComparison.Ordinal);
        root["originate"] = JsonNode.Parse("[\"10.10.0.0/24\"]");
        Assert.False(InterconnectConfig.Parse(root.ToJsonString()).Tunnels[0].CarriesIPv6);
    }

    /// <summary>Two tunnels' inner IPv6 subnets overlap: refused like the IPv4 ones.</summary>
    [Fact]
    public void OverlappingInnerIPv6Subnets_AreRejected()
    {
        var root = JsonNode.Parse(LabTopology.SiteConfig(200, 100, true))!.AsObject();
        root["tunnels"]![1]!["innerLocal6"] = "fd00:1::2/64";
        root["tunnels"]![1]!["innerPeer6"] = "fd00:1::3";
        var e = Assert.Throws<InterconnectConfigException>(() => InterconnectConfig.Parse(root.ToJsonString()));
        Assert.Equal("tunnels[1].innerLocal6", e.Field);
    }

    /// <summary>RFC 6164: on a /127 both addresses are usable, the all-zeros one included.</summary>
    [Fact]
    public void Slash127_AllowsTheAllZerosAddress_ButA64DoesNot()
    {
        var root = JsonNode.Parse(LabTopology.SiteConfig(200, 100, true))!.AsObject();
        root["tunnels"]![0]!["innerLocal6"] = "fd00:1::1/64";
        root["tunnels"]![0]!["innerPeer6"] = "fd00:1::2";
        Assert.Equal(IPNetwork.Parse("fd00:1::/64"), InterconnectConfig.Parse(root.ToJsonString()).Tunnels[0].InnerNetwork6);
        root["tunnels"]![0]!["innerPeer6"] = "fd00:1::";
        Assert.Equal("tunnels[0].innerPeer6", Assert.Throws<InterconnectConfigException>(() => InterconnectConfig.Parse(root.ToJsonString())).Field);
    }

    /// <summary>RFC 4486 4: Cease / Maximum Number of Prefixes Reached carries AFI (2 octets), SAFI (1) and the bound (4).</summary>
    [Theory]
    [InlineData(System.Net.Sockets.AddressFamily.InterNetwork, 2, "00010100000002")]
    [InlineData(System.Net.Sockets.AddressFamily.InterNetworkV6, 70000, "00020100011170")]
    public void MaxPrefixNotification_CarriesTheFamily(System.Net.Sockets.AddressFamily family, int max, string hex) =>
        Assert.Equal(hex, Convert.ToHexString(Netcore.Interconnect.Daemon.InterconnectDaemon.MaxPrefixData(family, max)));

    [Fact]
    public void NotJson_IsAConfigError() =>
        Assert.Equal("$", Assert.Throws<InterconnectConfigException>(() => InterconnectConfig.Parse("{ nope")).Field);

    [Theory]
    [InlineData("10.20.0.0/16", "10.20.0.0/16", true)]
    [InlineData("10.20.0.0/16", "10.20.1.0/24", false)]      // exact unless "le"
    [InlineData("10.20.0.0/16 le 24", "10.20.1.0/24", true)]
    [InlineData("10.20.0.0/16 le 24", "10.20.1.0/25", false)]
    [InlineData("10.20.0.0/16 le 24", "10.21.0.0/24", false)]
    [InlineData("10.20.0.0/16 le 24", "10.0.0.0/8", false)]  // shorter than the rule's prefix
    [InlineData("10.20.0.0/16 le 32", "10.20.9.9/32", true)]
    [InlineData("fd20::/32 le 64", "fd20:0:5::/64", true)]
    [InlineData("fd20::/32 le 64", "fd20:0:5::/80", false)]
    [InlineData("fd20::/32 le 64", "fd21::/64", false)]
    [InlineData("fd20::/32", "fd20::/32", true)]
    [InlineData("10.20.0.0/16 le 32", "::ffff:10.20.0.0/112", false)]  // the families never mix
    [InlineData("::/0 le 128", "10.20.0.0/24", false)]
    public void ImportRule_MatchesLikeAPrefixListEntry(string rule, string prefix, bool matches) =>
        Assert.Equal(matches, InterconnectConfig.ParseRule(rule, "r").Matches(IPNetwork.Parse(prefix)));
}
