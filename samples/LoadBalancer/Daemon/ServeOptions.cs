using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using Netcore.Xdp;

namespace Netcore.LoadBalancer.Daemon;

/// <summary>Options of <c>serve</c> (see <see cref="Usage"/>).</summary>
internal sealed record ServeOptions
{
    public const string Usage = """
        usage: Netcore.LoadBalancer serve --interface IF --api 127.0.0.1:PORT --db PATH
                 [--netns NAME] [--token T] [--pin-dir DIR] [--node-name NAME]
                 [--bgp-router-id IP --bgp-local-as N --bgp-peer IP:AS[,KEY=VALUE...] ...] [--bgp-next-hop IP] [--bfd]
                 [--bgp-community ASN:V|NAME ...] [--bgp-large-community A:B:C ...] [--bgp-med N]
                 [--node-check tcp:IP:PORT|http://...] [--xdp-mode native|generic] [--log-format text|json]
                 [--detach-on-exit] [--gateway-mac MAC] [--source-v4 IP] [--source-v6 IP]
                 [--hash-seed N] [--table-size PRIME] [--mtu N] [--icmp-rate N]
        """;

    /// <summary>The same on every node, so every node maps a flow to the same backend.</summary>
    public const uint DefaultHashSeed = 0x4E434C42; // "NCLB"

    public required string Interface { get; init; }
    public required IPEndPoint Api { get; init; }
    public required string Db { get; init; }
    public string? Token { get; init; }
    public required string NodeName { get; init; }
    public required string PinDirectory { get; init; }
    public IPAddress? BgpRouterId { get; init; }
    public uint BgpLocalAs { get; init; }

    /// <summary>The routers (<c>--bgp-peer</c>), each with its own policy.</summary>
    public IReadOnlyList<Routing.BgpPeerConfig> BgpPeers { get; init; } = [];

    /// <summary>Next hop of the IPv4 VIP routes (<c>--bgp-next-hop</c> with an IPv4 address); null: the interface's IPv4 address.</summary>
    public IPAddress? BgpNextHopV4 { get; init; }

    /// <summary>Next hop of the IPv6 VIP routes (<c>--bgp-next-hop</c> with an IPv6 address); null: the interface's global IPv6 address.</summary>
    public IPAddress? BgpNextHopV6 { get; init; }

    /// <summary>Communities (RFC 1997) the VIP routes carry.</summary>
    public IReadOnlyList<Netcore.Bgp.BgpCommunity> BgpCommunities { get; init; } = [];

    /// <summary>MULTI_EXIT_DISC (RFC 4271 5.1.4) on the VIP routes: routers prefer the nodes with the lowest; null: none.</summary>
    public uint? BgpMed { get; init; }

    /// <summary>Large communities (RFC 8092) the VIP routes carry.</summary>
    public IReadOnlyList<Netcore.Bgp.BgpLargeCommunity> BgpLargeCommunities { get; init; } = [];
    public bool Bfd { get; init; }
    public string? NodeCheck { get; init; }
    public XdpMode XdpMode { get; init; } = XdpMode.Native;
    public bool JsonLogs { get; init; }
    public bool DetachOnExit { get; init; }
    public byte[] GatewayMac { get; init; } = new byte[6];
    public IPAddress? SourceV4 { get; init; }
    public IPAddress? SourceV6 { get; init; }
    public uint HashSeed { get; init; } = DefaultHashSeed;
    public int TableSize { get; init; } = Maglev.MaglevTableBuilder.DefaultSize;
    public int? Mtu { get; init; }

    /// <summary>ICMP "too big" messages per second the node may send for packets above the MTU (0 = none).</summary>
    public uint IcmpRate { get; init; } = DataPlane.LbConfig.DefaultIcmpRate;

    /// <summary>True when BGP is configured.</summary>
    public bool BgpEnabled => BgpPeers.Count > 0;

    /// <summary>Parses the arguments after <c>serve</c>.</summary>
    /// <exception cref="ArgumentException">An option is missing or invalid (the message names it).</exception>
    public static ServeOptions Parse(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        string? iface = null, db = null, token = null, node = null, pin = null, nodeCheck = null;
        IPEndPoint? api = null;
        IPAddress? routerId = null, nextHop4 = null, nextHop6 = null, src4 = null, src6 = null;
        uint? med = null;
        uint localAs = 0, seed = DefaultHashSeed;
        int table = Maglev.MaglevTableBuilder.DefaultSize;
        int? mtu = null;
        uint icmpRate = DataPlane.LbConfig.DefaultIcmpRate;
        var peerArgs = new List<string>();
        var communities = new List<Netcore.Bgp.BgpCommunity>();
        var large = new List<Netcore.Bgp.BgpLargeCommunity>();
        bool bfd = false, json = false, detach = false;
        var mode = XdpMode.Native;
        byte[] gw = new byte[6];
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string V() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{a} needs a value");
            switch (a)
            {
                case "--interface": iface = V(); break;
                case "--netns": V(); break; // handled before parsing (NetnsExec)
                case "--api": api = IPEndPoint.TryParse(V(), out var ep) ? ep : throw new ArgumentException($"--api: '{args[i]}' is not IP:PORT"); break;
                case "--db": db = V(); break;
                case "--token": token = V(); break;
                case "--pin-dir": pin = V(); break;
                case "--node-name": node = V(); break;
                case "--bgp-router-id": routerId = Ip(V(), a); break;
                case "--bgp-local-as": localAs = UInt(V(), a); break;
                case "--bgp-peer": peerArgs.Add(V()); break;
                case "--bgp-next-hop":
                    // One per family: IPv4 VIPs go with the IPv4 one, IPv6 VIPs with the IPv6 one, over
                    // any session (RFC 4760 3: the next hop's family is the NLRI's, not the session's).
                    IPAddress hop = NextHop(V());
                    if (hop.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
                        nextHop4 = nextHop4 is null ? hop : throw new ArgumentException($"--bgp-next-hop: two IPv4 next hops ({nextHop4}, {hop})");
                    else
                        nextHop6 = nextHop6 is null ? hop : throw new ArgumentException($"--bgp-next-hop: two IPv6 next hops ({nextHop6}, {hop})");
                    break;
                case "--bfd": bfd = true; break;
                case "--node-check": nodeCheck = V(); break;
                case "--xdp-mode":
                    mode = V() switch
                    {
                        "native" => XdpMode.Native,
                        "generic" => XdpMode.Generic,
                        var m => throw new ArgumentException($"--xdp-mode: '{m}' is not native or generic"),
                    };
                    break;
                case "--log-format":
                    json = V() switch
                    {
                        "text" => false,
                        "json" => true,
                        var f => throw new ArgumentException($"--log-format: '{f}' is not text or json"),
                    };
                    break;
                case "--detach-on-exit": detach = true; break;
                case "--gateway-mac":
                    try
                    {
                        gw = PhysicalAddress.Parse(V()).GetAddressBytes();
                    }
                    catch (FormatException)
                    {
                        throw new ArgumentException($"--gateway-mac: '{args[i]}' is not a MAC address");
                    }
                    if (gw.Length != 6)
                        throw new ArgumentException("--gateway-mac: a MAC address has 6 bytes");
                    break;
                case "--source-v4": src4 = Ip(V(), a); break;
                case "--source-v6": src6 = Ip(V(), a); break;
                case "--hash-seed": seed = UInt(V(), a); break;
                case "--table-size": table = (int)UInt(V(), a); break;
                case "--mtu": mtu = (int)UInt(V(), a); break;
                case "--icmp-rate": icmpRate = UInt(V(), a); break;
                case "--bgp-med": med = UInt(V(), a); break;
                case "--bgp-community": communities.Add(Community(V(), a, Netcore.Bgp.BgpCommunity.Parse)); break;
                case "--bgp-large-community": large.Add(Community(V(), a, Netcore.Bgp.BgpLargeCommunity.Parse)); break;
                default: throw new ArgumentException($"unknown option {a}");
            }
        }
        if (iface is null)
            throw new ArgumentException("--interface is required");
        if (api is null)
            throw new ArgumentException("--api is required");
        if (db is null)
            throw new ArgumentException("--db is required");
        if (peerArgs.Count > 0 && (routerId is null || localAs == 0))
            throw new ArgumentException("--bgp-peer needs --bgp-router-id and --bgp-local-as");
        // After the loop: a peer's policy depends on --bgp-local-as, which may come later.
        var peers = peerArgs.Select(p => Routing.BgpPeerConfig.Parse(p, localAs)).ToList();
        foreach (var dup in peers.GroupBy(p => p.Address).Where(g => g.Count() > 1))
            throw new ArgumentException($"--bgp-peer: {dup.Key} given twice");
        node ??= DefaultNodeName();
        if (node.Length == 0 || node.Contains('/', StringComparison.Ordinal) || node is "." or "..")
            throw new ArgumentException($"--node-name: '{node}' cannot name a directory");
        return new ServeOptions
        {
            Interface = iface, Api = api, Db = db, Token = token, NodeName = node,
            PinDirectory = pin ?? Path.Combine("/sys/fs/bpf/netcore-lb", node),
            BgpRouterId = routerId, BgpLocalAs = localAs, BgpPeers = peers, BgpNextHopV4 = nextHop4, BgpNextHopV6 = nextHop6, Bfd = bfd,
            NodeCheck = nodeCheck, XdpMode = mode, JsonLogs = json, DetachOnExit = detach, GatewayMac = gw,
            SourceV4 = src4, SourceV6 = src6, HashSeed = seed, TableSize = table, Mtu = mtu,
            IcmpRate = icmpRate, BgpCommunities = communities, BgpLargeCommunities = large, BgpMed = med,
        };
    }

    /// <summary>Host name plus the network namespace's inode: distinct for daemons in different
    /// namespaces of one host, stable across restarts in the same one.</summary>
    private static string DefaultNodeName()
    {
        string ns = "";
        try
        {
            string link = new FileInfo("/proc/self/ns/net").LinkTarget ?? "";
            int open = link.IndexOf('['), close = link.IndexOf(']');
            if (open >= 0 && close > open)
                ns = "-ns" + link[(open + 1)..close];
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return Environment.MachineName + ns;
    }

    private static IPAddress Ip(string s, string what) =>
        IPAddress.TryParse(s, out var a) ? a : throw new ArgumentException($"{what}: '{s}' is not an IP address");

    /// <summary>A <c>--bgp-next-hop</c>: a unicast address a router can forward to.</summary>
    private static IPAddress NextHop(string s)
    {
        IPAddress hop = Ip(s, "--bgp-next-hop");
        if (hop.IsIPv4MappedToIPv6)
            hop = hop.MapToIPv4();
        byte[] b = hop.GetAddressBytes();
        bool v4 = b.Length == 4;
        if (hop.Equals(IPAddress.Any) || hop.Equals(IPAddress.IPv6Any) || hop.Equals(IPAddress.Broadcast) || IPAddress.IsLoopback(hop)
            || (v4 && b[0] >= 224) || (!v4 && b[0] == 0xff))
            throw new ArgumentException($"--bgp-next-hop: '{s}' is not a unicast address a router can forward to");
        // RFC 2545 3: the next hop of IPv6 routes is a global address (a link-local one may only come second).
        if (hop.IsIPv6LinkLocal)
            throw new ArgumentException($"--bgp-next-hop: '{s}' is link-local; IPv6 routes need a global next hop (RFC 2545 3)");
        return hop;
    }

    /// <summary>A community option's value (RFC 1997 "asn:value" or a well-known name; RFC 8092 "a:b:c").</summary>
    private static T Community<T>(string s, string what, Func<string, T> parse)
    {
        try
        {
            return parse(s);
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new ArgumentException($"{what}: {e.Message}");
        }
    }

    private static uint UInt(string s, string what) =>
        uint.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out uint v) ? v : throw new ArgumentException($"{what}: '{s}' is not a non-negative integer");
}
