using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Netcore.Bgpd.Daemon;

namespace Netcore.Bgpd.Cli;

/// <summary>
/// <c>show neighbors</c> and <c>show routes [prefix]</c>: read the running daemon's REST API and
/// print tables, as <c>birdc show protocols</c> / <c>show route</c> and <c>gobgp neighbor</c> do.
/// The token comes from <c>--token</c> or the BGPD_TOKEN environment variable.
/// </summary>
internal static class ShowCommand
{
    /// <summary>The default API address (the configuration's default).</summary>
    public const string DefaultApi = ApiClient.DefaultApi;

    public static Command Create()
    {
        var api = ApiClient.ApiOption();
        var token = ApiClient.TokenOption();
        var neighbors = new Command("neighbors", "Neighbours: state, uptime, prefixes received/accepted/advertised per family, last error");
        neighbors.SetAction((p, ct) => NeighborsAsync(p.GetValue(api)!, p.GetValue(token), Console.Out, ct));
        var prefix = new Argument<string?>("prefix") { Description = "A prefix (exact) or an address (longest match)", Arity = ArgumentArity.ZeroOrOne };
        var family = new Option<string?>("--family") { Description = "ipv4-unicast or ipv6-unicast" };
        var routes = new Command("routes", "The Loc-RIB: every path, best first (marked *)") { prefix, family };
        routes.SetAction((p, ct) => RoutesAsync(p.GetValue(api)!, p.GetValue(token), p.GetValue(prefix), p.GetValue(family), Console.Out, ct));
        return new Command("show", "Read the running daemon's REST API") { api, token, neighbors, routes };
    }

    public static async Task<int> NeighborsAsync(string api, string? token, TextWriter output, CancellationToken ct)
    {
        var (doc, code) = await GetAsync(api, token, "api/v1/neighbors", output, ct).ConfigureAwait(false);
        if (doc is null)
            return code;
        using (doc)
        {
            output.Write(NeighborTable(doc.RootElement));
        }
        return 0;
    }

    public static async Task<int> RoutesAsync(string api, string? token, string? prefix, string? family, TextWriter output, CancellationToken ct)
    {
        var q = new List<string>();
        if (prefix is not null)
            q.Add("prefix=" + Uri.EscapeDataString(prefix));
        if (family is not null)
            q.Add("family=" + Uri.EscapeDataString(family));
        var (doc, code) = await GetAsync(api, token, "api/v1/rib" + (q.Count > 0 ? "?" + string.Join('&', q) : ""), output, ct).ConfigureAwait(false);
        if (doc is null)
            return code;
        using (doc)
        {
            output.Write(RouteTable(doc.RootElement));
        }
        return 0;
    }

    /// <summary>One row per neighbour and family.</summary>
    internal static string NeighborTable(JsonElement neighbors)
    {
        var rows = new List<string[]> { new[] { "Neighbor", "AS", "State", "Up/Down", "Family", "Received", "Accepted", "Advertised", "Last error" } };
        foreach (var n in neighbors.EnumerateArray())
        {
            string state = n.GetProperty("state").GetString()!;
            string up = state == "Established" ? BgpdDaemon.Duration(n.GetProperty("uptimeSeconds").GetDouble()) : "-";
            string error = n.TryGetProperty("lastError", out var e)
                ? $"{e.GetProperty("direction").GetString()} {e.GetProperty("text").GetString()}"
                : "";
            bool first = true;
            var prefixes = n.GetProperty("prefixes").EnumerateObject().ToList();
            if (prefixes.Count == 0)
                prefixes.Add(default);
            foreach (var f in prefixes)
            {
                bool has = f.Value.ValueKind == JsonValueKind.Object;
                rows.Add(
                [
                    first ? n.GetProperty("address").GetString()! : "",
                    first ? n.GetProperty("as").GetUInt32().ToString(CultureInfo.InvariantCulture) : "",
                    first ? state : "",
                    first ? up : "",
                    has ? f.Name : "-",
                    has ? f.Value.GetProperty("received").GetInt64().ToString(CultureInfo.InvariantCulture) : "-",
                    has ? f.Value.GetProperty("accepted").GetInt64().ToString(CultureInfo.InvariantCulture) : "-",
                    has ? f.Value.GetProperty("advertised").GetInt64().ToString(CultureInfo.InvariantCulture) : "-",
                    first ? error : "",
                ]);
                first = false;
            }
        }
        return Table(rows);
    }

    /// <summary>One row per path, the best one of each prefix marked with '*'.</summary>
    internal static string RouteTable(JsonElement rib)
    {
        var rows = new List<string[]> { new[] { "", "Prefix", "Next hop", "From", "AS path", "Origin", "MED", "LocPrf", "Communities" } };
        foreach (var entry in rib.EnumerateArray())
        {
            bool first = true;
            foreach (var p in entry.GetProperty("paths").EnumerateArray())
            {
                var comms = new List<string>();
                foreach (string name in new[] { "communities", "largeCommunities", "extendedCommunities" })
                    if (p.TryGetProperty(name, out var c))
                        comms.AddRange(c.EnumerateArray().Select(x => x.GetString()!));
                rows.Add(
                [
                    p.TryGetProperty("best", out var b) && b.ValueKind == JsonValueKind.True ? "*" : "",
                    first ? entry.GetProperty("prefix").GetString()! : "",
                    Str(p, "nextHop"),
                    Str(p, "from") + (p.TryGetProperty("fromAs", out var fa) ? $" AS{fa.GetUInt32()}" : ""),
                    Str(p, "asPath") is { Length: > 0 } path ? path : "(empty)",
                    Str(p, "origin"),
                    Str(p, "med"),
                    Str(p, "localPref"),
                    string.Join(' ', comms),
                ]);
                first = false;
            }
        }
        return Table(rows) + $"{rib.GetArrayLength()} prefixes\n";
    }

    private static string Str(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) ? v.ValueKind == JsonValueKind.String ? v.GetString()! : v.GetRawText() : "";

    private static string Table(List<string[]> rows)
    {
        int cols = rows[0].Length;
        var width = new int[cols];
        foreach (var r in rows)
            for (int i = 0; i < cols; i++)
                width[i] = Math.Max(width[i], r[i].Length);
        var sb = new StringBuilder();
        foreach (var r in rows)
        {
            for (int i = 0; i < cols; i++)
                sb.Append(i == cols - 1 ? r[i] : r[i].PadRight(width[i] + 2));
            sb.Append('\n');
        }
        return string.Join('\n', sb.ToString().Split('\n').Select(l => l.TrimEnd()));
    }

    private static async Task<(JsonDocument? Doc, int Code)> GetAsync(string api, string? token, string path, TextWriter output, CancellationToken ct)
    {
        var r = await ApiClient.SendAsync(HttpMethod.Get, api, token, path, null, ct).ConfigureAwait(false);
        if (r.Doc is not null)
            await output.FlushAsync(ct).ConfigureAwait(false);
        return r;
    }
}
