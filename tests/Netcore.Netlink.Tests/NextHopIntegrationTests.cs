using System.Net;
using System.Text.Json;

namespace Netcore.Netlink.Tests;

/// <summary>Nexthop objects and groups against `ip -json nexthop`, both directions.</summary>
public sealed class NextHopIntegrationTests
{
    [LinuxFact(Netns = true)]
    public async Task NextHopsAndGroups_BothDirections()
    {
        using var ns = TestNetns.Create("nh");
        using var client = NetlinkClient.Open(ns.Name);
        int e0 = await client.CreateVethAsync("e0", "e1");
        int e1 = await client.GetLinkIndexAsync("e1");
        await client.SetLinkUpAsync(e0);
        await client.SetLinkUpAsync(e1);
        await client.AddAddressAsync(e0, IPAddress.Parse("10.0.0.1"), 24);
        await client.AddAddressAsync(e1, IPAddress.Parse("10.0.1.1"), 24);

        await client.AddNextHopAsync(new NextHopObject { Id = 1, Gateway = IPAddress.Parse("10.0.0.2"), OutputIndex = e0 });
        await client.AddNextHopAsync(new NextHopObject { Id = 2, Gateway = IPAddress.Parse("10.0.1.2"), OutputIndex = e1 });
        await client.AddNextHopAsync(new NextHopObject { Id = 10, Group = [new NextHopGroupMember(1, 3), new NextHopGroupMember(2)] });
        await client.AddRouteAsync(new Route { Destination = IPNetwork.Parse("192.168.0.0/16"), NextHopId = 10, Table = 50 });

        JsonElement nhs = ns.IpJson("nexthop show");
        JsonElement one = nhs.EnumerateArray().Single(n => n.GetProperty("id").GetInt32() == 1);
        Assert.Equal("10.0.0.2", one.GetProperty("gateway").GetString());
        Assert.Equal("e0", one.GetProperty("dev").GetString());
        JsonElement grp = nhs.EnumerateArray().Single(n => n.GetProperty("id").GetInt32() == 10).GetProperty("group");
        Assert.Equal(3, grp.EnumerateArray().Single(m => m.GetProperty("id").GetInt32() == 1).GetProperty("weight").GetInt32());
        Assert.Equal(10, ns.IpJson("route show table 50")[0].GetProperty("nhid").GetInt32());

        ns.Exec("ip nexthop add id 20 blackhole");
        var mine = await client.GetNextHopsAsync().ToListAsync();
        Assert.Equal(nhs.GetArrayLength() + 1, mine.Count);
        Assert.True(mine.Single(n => n.Id == 20).Blackhole);
        NextHopObject g = mine.Single(n => n.Id == 10);
        Assert.Equal([new NextHopGroupMember(1, 3), new NextHopGroupMember(2, 1)], g.Group!);
        Assert.Equal(IPAddress.Parse("10.0.1.2"), mine.Single(n => n.Id == 2).Gateway);
        Assert.Equal(10u, Assert.Single(await client.GetRouteListAsync(new RouteFilter { Table = 50 })).NextHopId);

        await client.DeleteNextHopAsync(10);
        Assert.DoesNotContain(ns.IpJson("nexthop show").EnumerateArray(), n => n.GetProperty("id").GetInt32() == 10);
        Assert.Empty(ns.IpJson("route show table 50").EnumerateArray());
    }
}
