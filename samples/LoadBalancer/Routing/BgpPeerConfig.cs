using System.Globalization;
using System.Net;
using Netcore.Bgp;

namespace Netcore.LoadBalancer.Routing;

/// <summary>
/// One <c>--bgp-peer IP:AS[,key=value...]</c>: a router and what this node sends it beyond the
/// daemon-wide route attributes (per-peer policy). Built into a Netcore.Bgp export
/// <see cref="BgpPolicy"/> (<see cref="ExportPolicy"/>) that the announcer runs on each VIP route.
/// </summary>
internal sealed record BgpPeerConfig
{
    /// <summary>The router's address.</summary>
    public required IPAddress Address { get; init; }

    /// <summary>The router's AS.</summary>
    public required uint As { get; init; }

    /// <summary><c>med=N</c>: MULTI_EXIT_DISC for this router, instead of <c>--bgp-med</c> (RFC 4271 5.1.4).</summary>
    public uint? Med { get; init; }

    /// <summary><c>prepend=N</c>: the local AS N more times on the AS_PATH (eBGP only), making this node a worse path at that router.</summary>
    public int Prepend { get; init; }

    /// <summary><c>community=C</c>: communities (RFC 1997) added to the daemon-wide ones for this router.</summary>
    public IReadOnlyList<BgpCommunity> Communities { get; init; } = [];

    /// <summary><c>large-community=A:B:C</c>: large communities (RFC 8092) added for this router.</summary>
    public IReadOnlyList<BgpLargeCommunity> LargeCommunities { get; init; } = [];

    /// <summary><c>vips=PREFIX</c>: only the VIPs inside these prefixes go to this router; empty: all of them.</summary>
    public IReadOnlyList<BgpPrefix> Vips { get; init; } = [];

    /// <summary><c>bfd=on|off</c>: BFD on this session regardless of <c>--bfd</c>; null: as <c>--bfd</c> says.</summary>
    public bool? Bfd { get; init; }

    /// <summary>The largest <c>prepend</c>: more only lengthens every AS_PATH the router passes on.</summary>
    public const int MaxPrepend = 10;

    /// <summary>True when the configuration changes anything beyond the daemon-wide attributes.</summary>
    public bool HasPolicy => Med is not null || Prepend > 0 || Communities.Count > 0 || LargeCommunities.Count > 0 || Vips.Count > 0;

    /// <summary>
    /// Parses <c>IP:AS</c> (an IPv6 address in brackets: <c>[2001:db8::1]:65000</c>) followed by
    /// comma-separated <c>key=value</c> options: <c>med</c>, <c>prepend</c>, <c>community</c>,
    /// <c>large-community</c>, <c>vips</c> (the last three repeatable), <c>bfd</c>.
    /// </summary>
    /// <param name="text">The option's value.</param>
    /// <param name="localAs">The daemon's AS (prepend is refused on internal sessions).</param>
    /// <exception cref="ArgumentException">The text is malformed; the message names the part.</exception>
    public static BgpPeerConfig Parse(string text, uint localAs)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] parts = text.Split(',');
        string head = parts[0];
        int colon = head.LastIndexOf(':');
        if (colon <= 0)
            throw new ArgumentException($"--bgp-peer: '{head}' is not IP:AS");
        string ip = head[..colon];
        if (ip.StartsWith('[') != ip.EndsWith(']'))
            throw new ArgumentException($"--bgp-peer: '{head}' is not IP:AS");
        if (!IPAddress.TryParse(ip.Trim('[', ']'), out var address))
            throw new ArgumentException($"--bgp-peer: '{ip}' is not an IP address");
        uint peerAs = UInt(head[(colon + 1)..], "AS", head);
        if (peerAs == 0)
            throw new ArgumentException($"--bgp-peer {head}: AS 0 is reserved (RFC 7607)");

        uint? med = null;
        int prepend = 0;
        bool? bfd = null;
        var communities = new List<BgpCommunity>();
        var large = new List<BgpLargeCommunity>();
        var vips = new List<BgpPrefix>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string part in parts.AsSpan(1))
        {
            int eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == part.Length - 1)
                throw new ArgumentException($"--bgp-peer {head}: '{part}' is not key=value");
            string key = part[..eq], value = part[(eq + 1)..];
            if (key is "med" or "prepend" or "bfd" && !seen.Add(key))
                throw new ArgumentException($"--bgp-peer {head}: {key} given twice");
            switch (key)
            {
                case "med":
                    med = UInt(value, key, head);
                    break;
                case "prepend":
                    uint n = UInt(value, key, head);
                    if (n > MaxPrepend)
                        throw new ArgumentException($"--bgp-peer {head}: prepend={n} is more than {MaxPrepend}");
                    // RFC 4271 5.1.2: a speaker does not modify the AS_PATH towards an internal peer.
                    if (peerAs == localAs && n > 0)
                        throw new ArgumentException($"--bgp-peer {head}: prepend needs an external peer (RFC 4271 5.1.2: the AS_PATH is not changed towards an internal one)");
                    prepend = (int)n;
                    break;
                case "community":
                    communities.Add(Parse(value, key, head, BgpCommunity.Parse));
                    break;
                case "large-community":
                    large.Add(Parse(value, key, head, BgpLargeCommunity.Parse));
                    break;
                case "vips":
                    if (!value.Contains('/', StringComparison.Ordinal) || !BgpPrefix.TryParse(value, out var prefix))
                        throw new ArgumentException($"--bgp-peer {head}: vips={value} is not a prefix (ADDRESS/LENGTH)");
                    if (!prefix.Address.Equals(IPAddress.Parse(value[..value.IndexOf('/', StringComparison.Ordinal)])))
                        throw new ArgumentException($"--bgp-peer {head}: vips={value} has bits set beyond its length (did you mean {prefix}?)");
                    vips.Add(prefix);
                    break;
                case "bfd":
                    bfd = value switch
                    {
                        "on" => true,
                        "off" => false,
                        _ => throw new ArgumentException($"--bgp-peer {head}: bfd={value} is not on or off"),
                    };
                    break;
                default:
                    throw new ArgumentException($"--bgp-peer {head}: unknown key '{key}' (med, prepend, community, large-community, vips, bfd)");
            }
        }
        return new BgpPeerConfig
        {
            Address = address, As = peerAs, Med = med, Prepend = prepend, Bfd = bfd,
            Communities = communities, LargeCommunities = large, Vips = vips,
        };
    }

    /// <summary>
    /// The export policy of this router: VIPs outside <see cref="Vips"/> rejected, the rest get
    /// <see cref="Med"/>, the added communities and the prepends; null when there is nothing to do.
    /// </summary>
    public BgpPolicy? ExportPolicy()
    {
        if (!HasPolicy)
            return null;
        return BgpPolicy.Build($"export-{Address}", p =>
        {
            if (Vips.Count > 0)
            {
                var list = new BgpPrefixList(Vips.Select(v => new BgpPrefixListEntry(v, v.Length, v.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128)));
                p.Term("vips", t => t.Match(m => m.Not(n => n.PrefixList(list))).Reject());
            }
            p.Term("attributes", t => t.Then(a =>
            {
                if (Med is uint med)
                    a.SetMed(med);
                if (Communities.Count > 0)
                    a.AddCommunity([.. Communities]);
                if (LargeCommunities.Count > 0)
                    a.AddLargeCommunity([.. LargeCommunities]);
                if (Prepend > 0)
                    a.PrependAs(Prepend);
                a.Accept();
            }));
        });
    }

    /// <summary>What <c>/api/v1/state</c> shows of the policy: the options as given.</summary>
    public string? Describe()
    {
        if (!HasPolicy)
            return null;
        var s = new List<string>();
        if (Med is uint med)
            s.Add($"med={med}");
        if (Prepend > 0)
            s.Add($"prepend={Prepend}");
        s.AddRange(Communities.Select(c => $"community={c}"));
        s.AddRange(LargeCommunities.Select(c => $"large-community={c}"));
        s.AddRange(Vips.Select(v => $"vips={v}"));
        return string.Join(',', s);
    }

    private static uint UInt(string s, string what, string head) =>
        uint.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out uint v) ? v
            : throw new ArgumentException($"--bgp-peer {head}: {what} '{s}' is not a non-negative integer");

    private static T Parse<T>(string s, string what, string head, Func<string, T> parse)
    {
        try
        {
            return parse(s);
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
        {
            throw new ArgumentException($"--bgp-peer {head}: {what}={s}: {e.Message}");
        }
    }
}
