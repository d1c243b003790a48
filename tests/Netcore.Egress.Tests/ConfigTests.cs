using System.Net;
using System.Text.Json;
using Netcore.Egress.Daemon;
using Netcore.Egress.Proxy;

namespace Netcore.Egress.Tests;

/// <summary>Settings (options and JSON), validation, and the proxy's request parsing.</summary>
public sealed class ConfigTests
{
    private static EgressConfig Valid(params string[] peers) => Program.Build(null, "up0", "192.0.2.1", "33000-33999", peers, null, null, null, false);

    [Fact]
    public void Options_BuildAValidatedConfig_WithDefaults()
    {
        var c = Valid("34000-34999=02:00:00:00:00:0b", "35000=02-00-00-00-00-0c");
        Assert.Equal(new PortRange(33000, 33999), c.Ports);
        Assert.Equal(2, c.Peers.Count);
        Assert.Equal(new PortRange(35000, 35000), c.Peers[1].Ports);
        Assert.Equal("02:00:00:00:00:0b", EgressConfig.FormatMac(c.Peers[0].Mac));
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 3128), c.Listen);
        Assert.Equal("lo", c.AddressDevice);
        Assert.True(c.ArpSysctls);
    }

    [Theory]
    [InlineData("33500-34500=02:00:00:00:00:0b", "peers")]  // overlaps this machine's range
    [InlineData("34000-34999=01:00:5e:00:00:01", "peer")]   // group MAC (I/G bit)
    [InlineData("34000-34999=00:00:00:00:00:00", "peer")]   // all-zero MAC
    [InlineData("34000-34999", "peer")]                     // no MAC
    [InlineData("0-10=02:00:00:00:00:0b", "peer")]          // RFC 6335 6: port 0 reserved
    [InlineData("40000-39999=02:00:00:00:00:0b", "peer")]   // reversed
    [InlineData("70000=02:00:00:00:00:0b", "peer")]         // not a port
    public void BadPeers_AreRejected_NamingTheField(string peer, string field)
    {
        var e = Assert.Throws<EgressConfigException>(() => Valid(peer));
        Assert.Equal(field, e.Field);
    }

    [Fact]
    public void OverlappingPeers_AreRejected()
    {
        var e = Assert.Throws<EgressConfigException>(() => Valid("34000-34999=02:00:00:00:00:0b", "34999-35100=02:00:00:00:00:0c"));
        Assert.Contains("overlap", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheExampleFile_Loads()
    {
        var c = EgressConfig.Load(Path.Combine(AppContext.BaseDirectory, "egress.example.json"));
        Assert.Equal(new PortRange(33000, 33999), c.Ports);
        Assert.Equal(IPAddress.Parse("2001:db8:ffff::1"), c.SharedAddress6);
        Assert.Equal(3129, c.Api!.Port);
        Assert.Equal(EgressConfig.DefaultDb, c.Db);
    }

    [Fact]
    public void APeerMac_GivenTwice_IsRejected_OneRangePerMachine()
    {
        var e = Assert.Throws<EgressConfigException>(() => Valid("34000-34999=02:00:00:00:00:0b", "35000-35999=02:00:00:00:00:0b"));
        Assert.Contains("given twice", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ApiTokenAndStore_Options_FileAndDefaults()
    {
        var d = Valid();
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 3129), d.Api);
        Assert.Null(d.ApiToken);
        Assert.Equal(EgressConfig.DefaultDb, d.Db);
        var o = Program.Build(null, "up0", "192.0.2.1", "33000-33999", [], null, null, null, false, "none", "abc-DEF_1.2~3+4/5==", "none");
        Assert.Null(o.Api);
        Assert.Null(o.Db);
        Assert.Equal("abc-DEF_1.2~3+4/5==", o.ApiToken);
        // RFC 6750 2.1 b64token; the API on loopback only.
        Assert.Equal("apiToken", Assert.Throws<EgressConfigException>(() => Program.Build(null, "up0", "192.0.2.1", "33000-33999", [], null, null, null, false, null, "has space")).Field);
        Assert.Equal("apiToken", Assert.Throws<EgressConfigException>(() => Program.Build(null, "up0", "192.0.2.1", "33000-33999", [], null, null, null, false, null, "=")).Field);
        Assert.Equal("api", Assert.Throws<EgressConfigException>(() => Program.Build(null, "up0", "192.0.2.1", "33000-33999", [], null, null, null, false, "0.0.0.0:3129")).Field);
        Assert.Equal("api", Assert.Throws<EgressConfigException>(() => Program.Build(null, "up0", "192.0.2.1", "33000-33999", [], null, null, null, false, "localhost")).Field);
        using var doc = JsonDocument.Parse("""{ "interface": "eth1", "sharedAddress": "192.0.2.1", "ports": "40000-40999", "api": "127.0.0.1:4000", "apiToken": "t", "db": "/tmp/x.db" }""");
        var j = EgressConfig.FromJson(doc.RootElement);
        Assert.Equal(4000, j.Api!.Port);
        Assert.Equal("t", j.ApiToken);
        Assert.Equal("/tmp/x.db", j.Db);
    }

    [Fact]
    public void WithoutPorts_TheStoredRangeIsUsed_AndNoneIsAnError()
    {
        string dir = Directory.CreateTempSubdirectory("egress-store-").FullName;
        try
        {
            string db = Path.Combine(dir, "egress.db");
            Assert.Equal("ports", Assert.Throws<EgressConfigException>(() => Program.Build(null, "up0", "192.0.2.1", null, [], null, null, null, false, null, null, db)).Field);
            Assert.False(File.Exists(db)); // looking does not create it
            using (var store = new Control.ConfigStore(db))
            {
                Assert.Null(store.Load());
                store.Save(new PortRange(40000, 40999), [EgressConfig.ParsePeer("41000-41999=02:00:00:00:00:0b")], () => { });
                // A failing apply rolls the transaction back.
                Assert.Throws<InvalidOperationException>(() => store.Save(new PortRange(1, 2), [], () => throw new InvalidOperationException()));
                var (ports, peers) = store.Load()!.Value;
                Assert.Equal(new PortRange(40000, 40999), ports);
                Assert.Equal("02:00:00:00:00:0b", EgressConfig.FormatMac(Assert.Single(peers).Mac));
            }
            Assert.Equal(new PortRange(40000, 40999), Program.Build(null, "up0", "192.0.2.1", null, [], null, null, null, false, null, null, db).Ports);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("2001:db8::1")]
    [InlineData("0.0.0.1")]
    [InlineData("127.0.0.1")]
    [InlineData("224.0.0.1")]
    [InlineData("255.255.255.255")]
    [InlineData("not-an-address")]
    public void SharedAddress_MustBeUnicastIpv4(string address)
    {
        var e = Assert.Throws<EgressConfigException>(() => Program.Build(null, "up0", address, "33000-33999", [], null, null, null, false));
        Assert.Equal("sharedAddress", e.Field);
    }

    [Theory]
    [InlineData("192.0.2.1", "not an IPv6 address")]
    [InlineData("::", "not a global unicast")]
    [InlineData("::1", "not a global unicast")]
    [InlineData("ff02::1", "not a global unicast")]
    [InlineData("fe80::1", "not a global unicast")]
    [InlineData("fe80::1%2", "zone index")]
    [InlineData("::ffff:192.0.2.1", "not a global unicast")]
    [InlineData("[2001:db8::1", "not an IPv6 address")]
    [InlineData("2001:db8::g", "not an IPv6 address")]
    public void SharedAddress6_MustBeGlobalUnicastIpv6(string address, string message)
    {
        var e = Assert.Throws<EgressConfigException>(() => Program.Build(null, "up0", "192.0.2.1", "33000-33999", [], null, null, null, false, shared6: address));
        Assert.Equal("sharedAddress6", e.Field);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SharedAddress6_IsOptional_FromTheOptionOrTheFile_BracketsAllowed()
    {
        Assert.Null(Program.Build(null, "up0", "192.0.2.1", "33000-33999", [], null, null, null, false).SharedAddress6);
        Assert.Equal(IPAddress.Parse("2001:db8:ffff::1"), Program.Build(null, "up0", "192.0.2.1", "33000-33999", [], null, null, null, false, shared6: "[2001:db8:ffff::1]").SharedAddress6);
        using var doc = JsonDocument.Parse("""{ "interface": "eth1", "sharedAddress": "192.0.2.1", "sharedAddress6": "2001:db8:ffff::1", "ports": "40000-40999" }""");
        Assert.Equal(IPAddress.Parse("2001:db8:ffff::1"), EgressConfig.FromJson(doc.RootElement).SharedAddress6);
        using var bad = JsonDocument.Parse("""{ "interface": "eth1", "sharedAddress": "192.0.2.1", "sharedAddress6": 6, "ports": "40000-40999" }""");
        Assert.Equal("sharedAddress6", Assert.Throws<EgressConfigException>(() => EgressConfig.FromJson(bad.RootElement)).Field);
    }

    [Fact]
    public void Listen_MustBeLoopback()
    {
        var e = Assert.Throws<EgressConfigException>(() => Program.Build(null, "up0", "192.0.2.1", "33000-33999", [], "0.0.0.0:3128", null, null, false));
        Assert.Equal("listen", e.Field);
    }

    [Fact]
    public void JsonFile_IsRead_AndOptionsOverrideIt()
    {
        string path = Path.Combine(Path.GetTempPath(), $"egress-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, """
            { "interface": "eth1", "sharedAddress": "198.51.100.9", "ports": "40000-40999",
              "peers": [ { "ports": "41000-41999", "mac": "02:00:00:00:00:0b" } ],
              "listen": "127.0.0.1:0", "xdpMode": "generic", "arpSysctls": false }
            """);
        try
        {
            var c = Program.Build(new FileInfo(path), null, null, null, [], null, null, null, false);
            Assert.Equal("eth1", c.Interface);
            Assert.Equal(IPAddress.Parse("198.51.100.9"), c.SharedAddress);
            Assert.Equal(Netcore.Xdp.XdpMode.Generic, c.XdpMode);
            Assert.False(c.ArpSysctls);
            Assert.Equal(0, c.Listen.Port);
            Assert.Single(c.Peers);
            var o = Program.Build(new FileInfo(path), "eth2", null, "42000-42999", [], null, null, null, false);
            Assert.Equal("eth2", o.Interface);
            Assert.Equal(new PortRange(42000, 42999), o.Ports);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("""{ "interface": "eth1", "sharedAddress": "192.0.2.1", "ports": "1-2", "colour": "red" }""", "colour")]
    [InlineData("""{ "sharedAddress": "192.0.2.1", "ports": "1-2" }""", "interface")]
    [InlineData("""{ "interface": "eth1", "sharedAddress": "192.0.2.1", "ports": 5 }""", "ports")]
    [InlineData("""{ "interface": "eth1", "sharedAddress": "192.0.2.1", "ports": "1-2", "peers": [ { "ports": "3-4" } ] }""", "peers")]
    [InlineData("""{ "interface": "eth1", "sharedAddress": "192.0.2.1", "ports": "1-2", "xdpMode": "turbo" }""", "xdpMode")]
    public void BadJson_IsRejected_NamingTheField(string json, string field)
    {
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(field, Assert.Throws<EgressConfigException>(() => EgressConfig.FromJson(doc.RootElement)).Field);
    }

    [Fact]
    public void Bgp_FromJsonAndOptions_IsValidated()
    {
        using var doc = JsonDocument.Parse("""
            { "interface": "up0", "sharedAddress": "192.0.2.1", "ports": "33000-33999",
              "bgp": { "localAs": 4200000001, "routerId": "10.0.0.2", "peers": ["10.0.0.1:65000", "10.0.0.254:65000"] } }
            """);
        var c = EgressConfig.FromJson(doc.RootElement);
        Assert.Equal(4200000001u, c.BgpLocalAs);
        Assert.Equal(IPAddress.Parse("10.0.0.2"), c.BgpRouterId);
        Assert.Equal([new Netcore.Egress.Routing.BgpRouterPeer(IPAddress.Parse("10.0.0.1"), 65000), new(IPAddress.Parse("10.0.0.254"), 65000)], c.BgpPeers);
        var o = Program.WithBgp(Valid(), ["10.0.0.1:65000"], 65001, null);
        Assert.Equal(65001u, o.BgpLocalAs);
        Assert.Single(o.BgpPeers);
        Assert.Equal("bgpLocalAs", Assert.Throws<EgressConfigException>(() => Program.WithBgp(Valid(), ["10.0.0.1:65000"], null, null)).Field);
        Assert.Equal("bgpRouterId", Assert.Throws<EgressConfigException>(() => Program.WithBgp(Valid(), ["10.0.0.1:65000"], 65001, "2001:db8::1")).Field);
    }

    [Theory]
    [InlineData("10.0.0.1")]
    [InlineData("10.0.0.1:0")]          // RFC 7607: AS 0 is reserved
    [InlineData("10.0.0.1:4294967296")]
    [InlineData("router:65000")]
    [InlineData("2001:db8::1:65000")]    // IPv6 without brackets: the AS could be the last group
    [InlineData("[10.0.0.1]:65000")]     // brackets are for IPv6
    [InlineData("[fe80::1]:65000")]      // link-local: not supported
    [InlineData("[fe80::1%2]:65000")]
    [InlineData("[ff02::2]:65000")]
    [InlineData("[::ffff:10.0.0.1]:65000")]
    [InlineData("[2001:db8::1]:0")]
    public void BgpPeer_IsIpv4ColonAs_OrBracketedGlobalIpv6ColonAs(string text) =>
        Assert.Equal("bgpPeer", Assert.Throws<EgressConfigException>(() => Netcore.Egress.Routing.BgpRouterPeer.Parse(text)).Field);

    [Fact]
    public void BgpPeer_MayBeAnIpv6Router_InBrackets()
    {
        var p = Netcore.Egress.Routing.BgpRouterPeer.Parse("[2001:db8:10::1]:65000");
        Assert.Equal(IPAddress.Parse("2001:db8:10::1"), p.Address);
        Assert.Equal(65000u, p.As);
        Assert.Equal("[2001:db8:10::1]:65000", p.ToString());
        Assert.Equal("10.0.0.1:65000", Netcore.Egress.Routing.BgpRouterPeer.Parse("10.0.0.1:65000").ToString());
    }

    [Fact]
    public void SharedAddress_IsOptional_WithASharedIpv6Address_ButOneIsRequired()
    {
        // IPv6 only, from the options and from the file.
        var c = Program.Build(null, "up0", null, "33000-33999", [], null, null, null, false, shared6: "2001:db8:ffff::1");
        Assert.Null(c.SharedAddress);
        Assert.Equal(IPAddress.Parse("2001:db8:ffff::1"), c.SharedAddress6);
        using var doc = JsonDocument.Parse("""{ "interface": "eth1", "sharedAddress6": "2001:db8:ffff::1", "ports": "40000-40999" }""");
        Assert.Null(EgressConfig.FromJson(doc.RootElement).SharedAddress);
        // Neither: the error names the field and both options.
        var e = Assert.Throws<EgressConfigException>(() => Program.Build(null, "up0", null, "33000-33999", [], null, null, null, false));
        Assert.Equal("sharedAddress", e.Field);
        Assert.Contains("--address6", e.Message, StringComparison.Ordinal);
        using var none = JsonDocument.Parse("""{ "interface": "eth1", "ports": "40000-40999" }""");
        Assert.Equal("sharedAddress", Assert.Throws<EgressConfigException>(() => EgressConfig.FromJson(none.RootElement)).Field);
        // An IPv6-only daemon may announce to an IPv6 router with its own router id.
        var b = Program.WithBgp(c, ["[2001:db8:10::1]:65000"], 65001, "10.0.0.2");
        Assert.Equal(IPAddress.Parse("2001:db8:10::1"), Assert.Single(b.BgpPeers).Address);
    }

    [Fact]
    public void HappyEyeballs_InterleavesTheFamilies_Ipv6First()
    {
        // RFC 8305 4: First Address Family Count 1, IPv6 preferred (RFC 6724 2.1 precedence 40 over 35).
        IPAddress[] v6 = [IPAddress.Parse("2001:db8::1"), IPAddress.Parse("2001:db8::2"), IPAddress.Parse("2001:db8::3")];
        IPAddress[] v4 = [IPAddress.Parse("192.0.2.1"), IPAddress.Parse("192.0.2.2")];
        Assert.Equal(["2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2", "2001:db8::3"], HappyEyeballs.Order(v6, v4).Select(a => a.ToString()));
        Assert.Equal(["192.0.2.1", "192.0.2.2"], HappyEyeballs.Order([], v4).Select(a => a.ToString()));
        Assert.Equal(["2001:db8::1", "2001:db8::2", "2001:db8::3"], HappyEyeballs.Order(v6, []).Select(a => a.ToString()));
        // RFC 8305 5 and 8: the default delay, within the recommended bounds.
        Assert.Equal(TimeSpan.FromMilliseconds(250), HappyEyeballs.ConnectionAttemptDelay);
    }

    [Fact]
    public void IpLocalPortRangeValue_IsFirstInTheLowHalf_LastInTheHigh()
    {
        // linux/in.h IP_LOCAL_PORT_RANGE: "low 16 bits: lower bound, high 16 bits: upper bound".
        Assert.Equal(0x84D08128u, SourceSocket.RangeValue(new PortRange(33064, 34000)));
        Assert.Equal(24, SourceSocket.IpBindAddressNoPort);
        Assert.Equal(51, SourceSocket.IpLocalPortRange);
    }

    [LinuxFact(Tools = ["gcc"])]
    public void LinuxHeaderConstants_MatchTheOnesUsed()
    {
        var v = CHeaderProbe.Evaluate(["linux/in.h"], ["IP_BIND_ADDRESS_NO_PORT", "IP_LOCAL_PORT_RANGE"]);
        Assert.Equal(SourceSocket.IpBindAddressNoPort, (int)v["IP_BIND_ADDRESS_NO_PORT"]);
        Assert.Equal(SourceSocket.IpLocalPortRange, (int)v["IP_LOCAL_PORT_RANGE"]);
    }

    [Theory]
    [InlineData("CONNECT 10.0.1.2:8080 HTTP/1.1\r\nHost: 10.0.1.2:8080\r\n\r\n", "CONNECT", "10.0.1.2:8080", true)]
    [InlineData("GET /metrics HTTP/1.1\r\n\r\n", "GET", "/metrics", true)]
    [InlineData("CONNECT 10.0.1.2:8080\r\n\r\n", "", "", false)]
    [InlineData("CONNECT  10.0.1.2:8080 HTTP/1.1\r\n\r\n", "", "", false)]
    [InlineData("CONNECT 10.0.1.2:8080 SPDY/3\r\n\r\n", "", "", false)]
    public void RequestLine_IsParsedPerRfc9112(string head, string method, string target, bool ok)
    {
        byte[] b = System.Text.Encoding.ASCII.GetBytes(head);
        Assert.Equal(b.Length, ConnectProxy.HeadEnd(b));
        Assert.Equal(ok, ConnectProxy.TryParseRequestLine(b, out string m, out string t));
        if (ok)
        {
            Assert.Equal(method, m);
            Assert.Equal(target, t);
        }
    }

    [Theory]
    [InlineData("example.com:443", "example.com", 443, true)]
    [InlineData("[2001:db8::1]:443", "2001:db8::1", 443, true)]
    [InlineData("example.com", "", 0, false)]
    [InlineData("example.com:0", "", 0, false)]
    [InlineData("example.com:65536", "", 0, false)]
    [InlineData(":80", "", 0, false)]
    [InlineData("[2001:db8::1]:", "", 0, false)]
    [InlineData("[2001:db8::1]", "", 0, false)]
    [InlineData("2001:db8::1:443", "", 0, false)]
    [InlineData("[2001:db8::1:443", "", 0, false)]
    [InlineData("[192.0.2.1]:443", "", 0, false)]
    [InlineData("[fe80::1%25eth0]:443", "", 0, false)]
    [InlineData("[v1.x]:443", "", 0, false)]
    [InlineData("[::ffff:192.0.2.1]:80", "::ffff:192.0.2.1", 80, true)]
    public void Authority_IsHostColonPort(string target, string host, int port, bool ok)
    {
        Assert.Equal(ok, ConnectProxy.TryParseAuthority(target, out string h, out int p));
        if (ok)
        {
            Assert.Equal(host, h);
            Assert.Equal(port, p);
        }
    }
}
