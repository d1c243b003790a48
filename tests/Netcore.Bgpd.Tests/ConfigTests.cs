using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Netcore.Bgp;
using Netcore.Bgpd.Api;
using Netcore.Bgpd.Cli;

namespace Netcore.Bgpd.Tests;

/// <summary>The configuration's new settings (api, route validation shared with POST /routes), the reset body and the CLI tables.</summary>
public sealed class ConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("nc-bgpdcfg-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private BgpdConfig Load(string extra)
    {
        string p = Path.Combine(_dir, "bgpd.json");
        File.WriteAllText(p, $$"""
            {
              "routerId": "10.0.1.1",
              "localAs": 65001,
              "peers": [ { "address": "10.0.1.2", "as": 65002 } ]
              {{extra}}
            }
            """);
        return BgpdConfig.Load(p);
    }

    [Fact]
    public void Example_IsValid_WithTheApiOnLoopback()
    {
        var c = BgpdConfig.Load(Path.Combine(AppContext.BaseDirectory, "bgpd.example.json"));
        Assert.Equal("127.0.0.1:3179", c.Api!.EndPoint.ToString());
        Assert.Equal("change-me", c.Api.Token);
        // the prefix counts come from the RIB's counters: the routes as received are kept only when asked
        Assert.False(c.ToSpeakerOptions().Rib.KeepPrePolicy);
        Assert.True(Load(""", "keepPrePolicy": true""").ToSpeakerOptions().Rib.KeepPrePolicy);
    }

    [Fact]
    public void LinkLocalNextHop_DefaultsOn_AndCanBeTurnedOff()
    {
        Assert.True(Load("").Peers[0].ToOptions().LinkLocalNextHop);
        string p = Path.Combine(_dir, "ll.json");
        File.WriteAllText(p, """
            { "routerId": "10.0.1.1", "localAs": 65001, "peers": [ { "address": "fd00::2", "as": 65002, "linkLocalNextHop": false } ] }
            """);
        Assert.False(BgpdConfig.Load(p).Peers[0].ToOptions().LinkLocalNextHop);
    }

    [Fact]
    public void Api_Defaults_To127001Port3179_WithoutToken()
    {
        var c = Load(""", "api": {}""");
        Assert.NotNull(c.Api);
        Assert.Equal("127.0.0.1:3179", c.Api!.EndPoint.ToString());
        Assert.Null(c.Api.Token);
        var t = Load(""", "api": { "listen": "[::1]:0", "token": "abc-DEF_1.2~+/==" }""");
        Assert.Equal("[::1]:0", t.Api!.EndPoint.ToString());
        Assert.Equal("abc-DEF_1.2~+/==", t.Api.Token);
    }

    [Theory]
    [InlineData("""{ "listen": "localhost:3179" }""", "api.listen")]
    [InlineData("""{ "listen": "127.0.0.1" }""", "api.listen")]
    [InlineData("""{ "listen": "127.0.0.1:70000" }""", "api.listen")]
    [InlineData("""{ "token": "" }""", "api.token")]
    [InlineData("""{ "token": "has space" }""", "api.token")]
    [InlineData("""{ "token": "===" }""", "api.token")]
    [InlineData("""{ "token": "a=b" }""", "api.token")]
    [InlineData("""{ "token": "caf\u00e9" }""", "api.token")]
    public void Api_BadSettings_AreRejectedNamingTheField(string api, string field)
    {
        var e = Assert.Throws<BgpdConfigException>(() => Load($$""", "api": {{api}}"""));
        Assert.Equal(field, e.Field);
        Assert.Contains(field, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Api_UnknownField_IsRejected()
    {
        var e = Assert.Throws<BgpdConfigException>(() => Load(""", "api": { "port": 3179 }"""));
        Assert.Contains("port", e.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, string> BadRoutes => new()
    {
        { """{ "prefix": "192.0.2.0/33" }""", "prefix" },
        { """{ "prefix": "not a prefix" }""", "prefix" },
        { """{ "prefix": "192.0.2.1/24" }""", "prefix" },
        { """{ "prefix": "2001:db8::1/32" }""", "prefix" },
        { """{ "prefix": "192.0.2.0/24", "nextHop": "0.0.0.0" }""", "nextHop" },
        { """{ "prefix": "192.0.2.0/24", "nextHop": "255.255.255.255" }""", "nextHop" },
        { """{ "prefix": "192.0.2.0/24", "nextHop": "239.1.1.1" }""", "nextHop" },
        { """{ "prefix": "2001:db8::/32", "nextHop": "ff02::5" }""", "nextHop" },
        { """{ "prefix": "2001:db8::/32", "nextHop": "10.0.0.1" }""", "nextHop" },
        { """{ "prefix": "192.0.2.0/24", "nextHop": "2001:db8::1" }""", "nextHop" },
        { """{ "prefix": "192.0.2.0/24", "communities": ["65536:1"] }""", "communities" },
        { """{ "prefix": "192.0.2.0/24", "communities": ["1:2:3"] }""", "communities" },
        { """{ "prefix": "192.0.2.0/24", "communities": ["-1:2"] }""", "communities" },
        { """{ "prefix": "192.0.2.0/24", "largeCommunities": ["1:2"] }""", "largeCommunities" },
        { """{ "prefix": "192.0.2.0/24", "largeCommunities": ["4294967296:1:2"] }""", "largeCommunities" },
    };

    [Theory]
    [MemberData(nameof(BadRoutes))]
    public void Routes_BadEntries_AreRejectedNamingTheField(string route, string field)
    {
        var e = Assert.Throws<BgpdConfigException>(() => Load($$""", "routes": [ {{route}} ]"""));
        Assert.Equal(field, e.Field);
    }

    [Fact]
    public void Routes_ValidEntries_BecomeRoutes()
    {
        var c = Load("""
            , "routes": [
              { "prefix": "198.51.100.7" },
              { "prefix": "192.0.2.0/24", "nextHop": "10.0.1.9", "communities": ["65001:42", "NO_EXPORT"], "largeCommunities": ["4200000001:1:2"], "med": 5, "localPref": 200 },
              { "prefix": "2001:db8:100::/48", "nextHop": "2001:db8::1" } ]
            """);
        var host = c.Routes[0].ToRoute();
        Assert.Equal(BgpPrefix.Parse("198.51.100.7/32"), host.Prefix);
        var r = c.Routes[1].ToRoute();
        Assert.Equal("10.0.1.9", r.Attributes.NextHop!.ToString());
        Assert.Equal([new BgpCommunity(65001, 42), BgpCommunity.NoExport], r.Attributes.Communities.ToArray());
        Assert.Equal([new BgpLargeCommunity(4200000001, 1, 2)], r.Attributes.LargeCommunities.ToArray());
        Assert.Equal(5u, r.Attributes.Med);
        Assert.Equal(200u, r.Attributes.LocalPreference);
        Assert.True(c.Routes[2].ToRoute().Prefix.IsIPv6);
    }

    [Fact]
    public void ResetBody_DefaultsToHard_AndIsValidated()
    {
        Assert.Equal((false, null), Parse(default));
        Assert.Equal((false, null), Parse(Json("{}")));
        Assert.Equal((true, null), Parse(Json("""{"type": "soft"}""")));
        Assert.Equal((false, "bye"), Parse(Json("""{"type": "hard", "message": "bye"}""")));
        // RFC 9003 2: 255 octets of UTF-8 at most (here 128 two-octet characters = 256 octets).
        Assert.Equal((false, new string('x', 255)), Parse(Json($$"""{"message": "{{new string('x', 255)}}"}""")));
        foreach (string bad in new[] { $$"""{"message": "{{new string('\u00e9', 128)}}"}""",
                     """{"type": "warm"}""", """{"type": 1}""", """{"message": 5}""", """{"type": "soft", "message": "x"}""", """{"force": true}""", "[1]" })
        {
            var (_, _, error) = BgpdApi.ResetRequest(Json(bad));
            Assert.True(error is IStatusCodeHttpResult { StatusCode: 400 }, bad);
        }

        static (bool, string?) Parse(JsonElement e)
        {
            var (soft, message, error) = BgpdApi.ResetRequest(e);
            Assert.Null(error);
            return (soft, message);
        }
    }

    private static JsonElement Json(string s)
    {
        using var d = JsonDocument.Parse(s);
        return d.RootElement.Clone();
    }

    [Fact]
    public void NeighborTable_OneRowPerFamily_WithUptimeAndLastError()
    {
        var t = ShowCommand.NeighborTable(Json("""
            [ { "address": "10.0.1.2", "as": 65002, "state": "Established", "uptimeSeconds": 3725.2,
                "prefixes": { "ipv4-unicast": { "received": 10, "accepted": 8, "advertised": 2 }, "ipv6-unicast": { "received": 1, "accepted": 1, "advertised": 0 } } },
              { "address": "10.0.2.2", "as": 4200000001, "state": "Active", "uptimeSeconds": 0,
                "prefixes": { "ipv4-unicast": { "received": 0, "accepted": 0, "advertised": 0 } },
                "lastError": { "direction": "received", "code": 6, "subcode": 2, "text": "Cease/AdministrativeShutdown" } } ]
            """)).Split('\n');
        Assert.Matches(@"^Neighbor\s+AS\s+State\s+Up/Down\s+Family\s+Received\s+Accepted\s+Advertised\s+Last error$", t[0]);
        Assert.Matches(@"^10\.0\.1\.2\s+65002\s+Established\s+01:02:05\s+ipv4-unicast\s+10\s+8\s+2$", t[1]);
        Assert.Matches(@"^\s+ipv6-unicast\s+1\s+1\s+0$", t[2]);
        Assert.Matches(@"^10\.0\.2\.2\s+4200000001\s+Active\s+-\s+ipv4-unicast\s+0\s+0\s+0\s+received Cease/AdministrativeShutdown$", t[3]);
    }

    [Fact]
    public void RouteTable_MarksTheBestPath()
    {
        var t = ShowCommand.RouteTable(Json("""
            [ { "prefix": "203.0.113.0/24", "family": "ipv4-unicast", "paths": [
                { "prefix": "203.0.113.0/24", "best": true, "from": "10.0.1.2", "fromAs": 65002, "nextHop": "10.0.1.2", "asPath": "65002", "origin": "igp", "communities": ["65002:7"] },
                { "prefix": "203.0.113.0/24", "best": false, "from": "10.0.2.2", "fromAs": 65003, "nextHop": "10.0.2.2", "asPath": "65003 65010", "origin": "incomplete", "med": 10 } ] },
              { "prefix": "198.51.100.7/32", "family": "ipv4-unicast", "paths": [ { "prefix": "198.51.100.7/32", "best": true, "from": "local", "asPath": "", "origin": "igp" } ] } ]
            """)).Split('\n');
        Assert.Matches(@"^\*\s+203\.0\.113\.0/24\s+10\.0\.1\.2\s+10\.0\.1\.2 AS65002\s+65002\s+igp\s+65002:7$", t[1]);
        Assert.Matches(@"^\s+10\.0\.2\.2\s+10\.0\.2\.2 AS65003\s+65003 65010\s+incomplete\s+10$", t[2]);
        Assert.Matches(@"^\*\s+198\.51\.100\.7/32\s+local\s+\(empty\)\s+igp$", t[3]);
        Assert.Equal("2 prefixes", t[4]);
    }
}
