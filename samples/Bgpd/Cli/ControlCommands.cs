using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;

namespace Netcore.Bgpd.Cli;

/// <summary>
/// <c>route add|del</c> and <c>reset</c>: change the running daemon through its REST API
/// (POST/DELETE /api/v1/routes, POST /api/v1/neighbors/{addr}/reset), as <c>gobgp global rib add|del</c>
/// and <c>birdc reload|restart</c> do. The API validates (same rules as the configuration file); its 4xx
/// message is printed on stderr and the exit code is 1.
/// </summary>
internal static class ControlCommands
{
    /// <summary><c>route add PREFIX [--next-hop A] [--community C]... [--large-community L]... [--med N] [--local-pref N]</c> and <c>route del PREFIX</c>.</summary>
    public static Command Route()
    {
        var api = ApiClient.ApiOption();
        var token = ApiClient.TokenOption();

        var prefix = new Argument<string>("prefix") { Description = "The prefix, e.g. 198.51.100.7/32" };
        var nextHop = new Option<string?>("--next-hop") { Description = "Next hop (default: each session's own address)" };
        var communities = new Option<string[]>("--community") { Description = "A community asn:value or a well-known name (repeatable)" };
        var large = new Option<string[]>("--large-community") { Description = "A large community global:local1:local2 (repeatable)" };
        var med = new Option<uint?>("--med") { Description = "MULTI_EXIT_DISC" };
        var localPref = new Option<uint?>("--local-pref") { Description = "LOCAL_PREF (internal peers)" };
        var add = new Command("add", "Originate a route (or replace its attributes): POST /api/v1/routes") { prefix, nextHop, communities, large, med, localPref };
        add.SetAction((p, ct) => AddAsync(p.GetValue(api)!, p.GetValue(token), new RouteConfig
        {
            Prefix = p.GetValue(prefix)!,
            NextHop = p.GetValue(nextHop),
            Communities = [.. p.GetValue(communities) ?? []],
            LargeCommunities = [.. p.GetValue(large) ?? []],
            Med = p.GetValue(med),
            LocalPref = p.GetValue(localPref),
        }, Console.Out, ct));

        var delPrefix = new Argument<string>("prefix") { Description = "A prefix originated by the daemon" };
        var del = new Command("del", "Withdraw a route the daemon originates: DELETE /api/v1/routes") { delPrefix };
        del.SetAction((p, ct) => DelAsync(p.GetValue(api)!, p.GetValue(token), p.GetValue(delPrefix)!, Console.Out, ct));

        return new Command("route", "Originate or withdraw routes through the running daemon's API") { api, token, add, del };
    }

    /// <summary><c>reset NEIGHBOR [--soft] [--message TEXT]</c>.</summary>
    public static Command Reset()
    {
        var api = ApiClient.ApiOption();
        var token = ApiClient.TokenOption();
        var neighbor = new Argument<string>("neighbor") { Description = "The neighbour's address" };
        var soft = new Option<bool>("--soft") { Description = "Ask the peer for its routes again (ROUTE-REFRESH, RFC 2918) instead of closing the session" };
        var message = new Option<string?>("--message") { Description = "Hard reset: the shutdown communication sent with the NOTIFICATION (RFC 9003)" };
        var reset = new Command("reset", "Reset a session: hard (Cease / Administrative Reset, then reconnect) or --soft (route refresh)") { api, token, neighbor, soft, message };
        reset.SetAction((p, ct) => ResetAsync(p.GetValue(api)!, p.GetValue(token), p.GetValue(neighbor)!, p.GetValue(soft), p.GetValue(message), Console.Out, ct));
        return reset;
    }

    public static async Task<int> AddAsync(string api, string? token, RouteConfig route, TextWriter output, CancellationToken ct)
    {
        // The API's JSON shape (a "routes" entry of the configuration); empty lists and nulls left out.
        var body = new JsonObject { ["prefix"] = route.Prefix };
        if (route.NextHop is not null) body["nextHop"] = route.NextHop;
        if (route.Communities.Count > 0) body["communities"] = new JsonArray([.. route.Communities.Select(c => (JsonNode?)c)]);
        if (route.LargeCommunities.Count > 0) body["largeCommunities"] = new JsonArray([.. route.LargeCommunities.Select(c => (JsonNode?)c)]);
        if (route.Med is { } m) body["med"] = m;
        if (route.LocalPref is { } lp) body["localPref"] = lp;
        var (doc, code) = await ApiClient.SendAsync(HttpMethod.Post, api, token, "api/v1/routes", body.ToJsonString(), ct).ConfigureAwait(false);
        if (doc is null)
            return code;
        using (doc)
        {
            await output.WriteLineAsync($"route {doc.RootElement.GetProperty("prefix").GetString()} originated").ConfigureAwait(false);
        }
        return 0;
    }

    public static async Task<int> DelAsync(string api, string? token, string prefix, TextWriter output, CancellationToken ct)
    {
        var (doc, code) = await ApiClient.SendAsync(HttpMethod.Delete, api, token, "api/v1/routes?prefix=" + Uri.EscapeDataString(prefix), null, ct).ConfigureAwait(false);
        if (doc is null)
            return code;
        doc.Dispose();
        await output.WriteLineAsync($"route {prefix} withdrawn").ConfigureAwait(false);
        return 0;
    }

    public static async Task<int> ResetAsync(string api, string? token, string neighbor, bool soft, string? message, TextWriter output, CancellationToken ct)
    {
        var body = new JsonObject { ["type"] = soft ? "soft" : "hard" };
        if (message is not null) body["message"] = message; // the API refuses it with --soft (only a NOTIFICATION carries it)
        var (doc, code) = await ApiClient.SendAsync(HttpMethod.Post, api, token, $"api/v1/neighbors/{Uri.EscapeDataString(neighbor)}/reset", body.ToJsonString(), ct).ConfigureAwait(false);
        if (doc is null)
            return code;
        using (doc)
        {
            var r = doc.RootElement;
            string line = soft
                ? string.Create(CultureInfo.InvariantCulture, $"neighbor {r.GetProperty("neighbor").GetString()}: soft reset, route refresh sent for {string.Join(", ", r.GetProperty("routeRefresh").EnumerateArray().Select(f => f.GetString()))}")
                : $"neighbor {r.GetProperty("neighbor").GetString()}: hard reset (Cease / Administrative Reset), reconnecting";
            await output.WriteLineAsync(line).ConfigureAwait(false);
        }
        return 0;
    }
}
