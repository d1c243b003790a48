using System.Net;
using System.Net.Sockets;
using Netcore.Bgp.Capabilities;

namespace Netcore.Bgp.Rib;

/// <summary>Where a path came from: a peer, or the speaker itself for originated routes.</summary>
internal sealed class RibSource
{
    public RibSource(int id, BgpPeer? peer, IPAddress? address, uint peerAs, uint routerId, bool isEbgp)
    {
        Id = id;
        Peer = peer;
        SetAddress(address);
        PeerAs = peerAs;
        SetRouterId(routerId);
        IsEbgp = isEbgp;
    }

    public int Id { get; }
    public BgpPeer? Peer { get; }
    public IPAddress? Address { get; private set; }
    public UInt128 AddressKey { get; private set; }
    public bool AddressIsV6 { get; private set; }
    public uint PeerAs { get; set; }
    public uint RouterId { get; private set; }
    public IPAddress RouterIdAddress { get; private set; } = IPAddress.Any;
    public bool IsEbgp { get; set; }
    public bool IsRrClient { get; set; }
    public bool NextHopSelf { get; set; }

    /// <summary>The role the neighbour plays towards us (RFC 9234), derived from our configured role.</summary>
    public BgpRole? NeighbourRole { get; set; }

    public BgpPolicy Import { get; set; } = BgpPolicy.AcceptAll;
    public BgpPolicy Export { get; set; } = BgpPolicy.AcceptAll;

    /// <summary>Accepted paths per family (0 IPv4, 1 IPv6), for max-prefix.</summary>
    public int[] Accepted { get; } = new int[2];

    /// <summary>Paths in the Adj-RIB-In per family (accepted, rejected and stale ones): <see cref="BgpPrefixCounts.Received"/>.</summary>
    public int[] Received { get; } = new int[2];

    /// <summary>Paths in the Adj-RIB-Out per family: <see cref="BgpPrefixCounts.Advertised"/>.</summary>
    public int[] Advertised { get; } = new int[2];

    /// <summary>Stale paths per family (RFC 4724 4.2).</summary>
    public int[] Stale { get; } = new int[2];

    /// <summary>Paths of this source that are their prefix's Loc-RIB best path, per family: <see cref="BgpPrefixCounts.Selected"/> (kept by BgpRib.Emit).</summary>
    public int[] Selected { get; } = new int[2];

    /// <summary>Announced paths handled with RFC 7606 treat-as-withdraw, per family (a running count).</summary>
    public long[] TreatedAsWithdraw { get; } = new long[2];

    /// <summary>The counts last published to <see cref="Peer"/> (see BgpRib.PublishCounts).</summary>
    public PrefixCountSnapshot? Published { get; set; }

    /// <summary>Paths in the table (accepted, rejected or stale), to know when a scan is needed.</summary>
    public int PathCount { get; set; }

    public bool LimitHit { get; set; }

    /// <summary>Established and receiving exports.</summary>
    public bool Up { get; set; }
    public bool FamilyV4 { get; set; }
    public bool FamilyV6 { get; set; }
    public bool AddPathV4 { get; set; }
    public bool AddPathV6 { get; set; }
    public int AddPathCount { get; set; } = 1;
    public RibOut? Out { get; set; }

    /// <summary>Routes for this peer produced by the command being processed (flushed into <see cref="Out"/> after it).</summary>
    public List<(BgpPrefix Prefix, uint PathId, BgpPathAttributes? Attrs)> Batch { get; } = [];

    public IReadOnlyDictionary<BgpFamily, BgpMaxPrefix>? MaxPrefixes { get; set; }

    // per-UPDATE import memo (consecutive UPDATEs share their decoded attribute instance)
    public BgpPathAttributes? LastIn { get; set; }
    public BgpPathAttributes? LastImported { get; set; }

    public bool Family(bool v6) => v6 ? FamilyV6 : FamilyV4;
    public bool AddPath(bool v6) => v6 ? AddPathV6 : AddPathV4;

    public void SetAddress(IPAddress? a)
    {
        if (a is not null && a.IsIPv4MappedToIPv6) a = a.MapToIPv4();
        Address = a;
        AddressIsV6 = a?.AddressFamily == AddressFamily.InterNetworkV6;
        Span<byte> b = stackalloc byte[16];
        b.Clear();
        if (a is not null) a.TryWriteBytes(b, out _);
        AddressKey = System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(b);
    }

    public void SetRouterId(uint id)
    {
        RouterId = id;
        RouterIdAddress = new IPAddress([(byte)(id >> 24), (byte)(id >> 16), (byte)(id >> 8), (byte)id]);
    }

    public override string ToString() => Peer?.ToString() ?? "local";
}

/// <summary>One path as the decision process sees it.</summary>
internal readonly struct PathCandidate(BgpPathAttributes attrs, RibSource source, uint igpCost, uint remoteId, int index)
{
    public BgpPathAttributes Attrs { get; } = attrs;
    public RibSource Source { get; } = source;
    public uint IgpCost { get; } = igpCost;
    public uint RemoteId { get; } = remoteId;

    /// <summary>The caller's handle (a path slot).</summary>
    public int Index { get; } = index;
}

/// <summary>The RFC 4271 9.1.2.2 decision process (with RFC 4456 9 additions) over small sets of paths.</summary>
internal static class BestPath
{
    /// <summary>The neighbouring AS a path came from (RFC 4271 9.1.2.2 c: the leftmost AS of the AS_PATH); 0 for local/empty paths.</summary>
    public static uint NeighbourAs(BgpPathAttributes a) => a.AsPath.FirstAs ?? 0;

    private static uint RouterIdOf(in PathCandidate c)
    {
        // RFC 4456 9: a reflected route is compared by its ORIGINATOR_ID instead of the peer's identifier.
        if (c.Attrs.OriginatorId is { } o)
        {
            Span<byte> b = stackalloc byte[16];
            if (o.TryWriteBytes(b, out int n) && n == 4)
                return System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b);
        }
        return c.Source.RouterId;
    }

    /// <summary>
    /// Compares two paths; negative when <paramref name="a"/> is preferred. <paramref name="compareMed"/>
    /// false skips the MED step (used between the winners of different neighbour ASes).
    /// </summary>
    public static int Compare(in PathCandidate a, in PathCandidate b, BgpRibOptions o, bool compareMed, out BgpDecisionStep step)
    {
        // RFC 4271 9.1.1: the degree of preference is LOCAL_PREF (eBGP routes get the configured default).
        uint lpA = a.Attrs.LocalPreference ?? o.DefaultLocalPreference, lpB = b.Attrs.LocalPreference ?? o.DefaultLocalPreference;
        if (lpA != lpB) { step = BgpDecisionStep.LocalPreference; return lpA > lpB ? -1 : 1; }
        // 9.1.2.2 a: fewest AS numbers (an AS_SET counts 1, confederation segments 0: RFC 5065 5.3).
        int lenA = a.Attrs.AsPath.Length, lenB = b.Attrs.AsPath.Length;
        if (lenA != lenB) { step = BgpDecisionStep.AsPathLength; return lenA < lenB ? -1 : 1; }
        // 9.1.2.2 b: lowest ORIGIN (IGP < EGP < INCOMPLETE).
        if (a.Attrs.Origin != b.Attrs.Origin) { step = BgpDecisionStep.Origin; return a.Attrs.Origin < b.Attrs.Origin ? -1 : 1; }
        // 9.1.2.2 c: lowest MED, only between routes from the same neighbouring AS unless always-compare;
        // a missing MED is 0 (or the worst value as an option).
        if (compareMed && (o.AlwaysCompareMed || NeighbourAs(a.Attrs) == NeighbourAs(b.Attrs)))
        {
            uint missing = o.MissingMedAsWorst ? uint.MaxValue : 0;
            uint mA = a.Attrs.Med ?? missing, mB = b.Attrs.Med ?? missing;
            if (mA != mB) { step = BgpDecisionStep.Med; return mA < mB ? -1 : 1; }
        }
        // 9.1.2.2 d: routes learned over eBGP (and originated ones) before those learned over iBGP.
        if (a.Source.IsEbgp != b.Source.IsEbgp) { step = BgpDecisionStep.ExternalOverInternal; return a.Source.IsEbgp ? -1 : 1; }
        // 9.1.2.2 e: lowest interior cost to the next hop.
        if (a.IgpCost != b.IgpCost) { step = BgpDecisionStep.IgpCost; return a.IgpCost < b.IgpCost ? -1 : 1; }
        // 9.1.2.2 f: lowest BGP identifier (ORIGINATOR_ID when present, RFC 4456 9).
        uint idA = RouterIdOf(a), idB = RouterIdOf(b);
        if (idA != idB) { step = BgpDecisionStep.RouterId; return idA < idB ? -1 : 1; }
        // RFC 4456 9: shortest CLUSTER_LIST.
        int clA = a.Attrs.ClusterList.Length, clB = b.Attrs.ClusterList.Length;
        if (clA != clB) { step = BgpDecisionStep.ClusterListLength; return clA < clB ? -1 : 1; }
        // 9.1.2.2 g: lowest peer address (IPv4 before IPv6).
        if (a.Source.AddressIsV6 != b.Source.AddressIsV6) { step = BgpDecisionStep.PeerAddress; return a.Source.AddressIsV6 ? 1 : -1; }
        if (a.Source.AddressKey != b.Source.AddressKey) { step = BgpDecisionStep.PeerAddress; return a.Source.AddressKey < b.Source.AddressKey ? -1 : 1; }
        // Paths of one peer (ADD-PATH receive): lowest path id, so the order is total.
        if (a.RemoteId != b.RemoteId) { step = BgpDecisionStep.PathId; return a.RemoteId < b.RemoteId ? -1 : 1; }
        step = BgpDecisionStep.Equal;
        return 0;
    }

    /// <summary>
    /// The index (into <paramref name="paths"/>) of the best path, or -1 when empty. With deterministic MED
    /// the paths are grouped by neighbour AS, each group's best is found with MED, and the group winners
    /// are compared without MED: the result depends only on the set. Without it the paths are folded
    /// pairwise in the given (arrival) order, which is what RFC 4271 9.1.2.2 c makes order-dependent.
    /// </summary>
    public static int SelectBest(ReadOnlySpan<PathCandidate> paths, BgpRibOptions o)
    {
        if (paths.Length <= 1) return paths.Length - 1;
        if (!o.DeterministicMed || o.AlwaysCompareMed)
        {
            int best = 0;
            for (int i = 1; i < paths.Length; i++)
                if (Compare(paths[i], paths[best], o, compareMed: true, out _) < 0)
                    best = i;
            return best;
        }
        // group winners: winners[g] is the index of the best path of group g (groups by neighbour AS)
        Span<int> winners = paths.Length <= 64 ? stackalloc int[paths.Length] : new int[paths.Length];
        Span<uint> groupAs = paths.Length <= 64 ? stackalloc uint[paths.Length] : new uint[paths.Length];
        int groups = 0;
        for (int i = 0; i < paths.Length; i++)
        {
            uint nas = NeighbourAs(paths[i].Attrs);
            int g = groupAs[..groups].IndexOf(nas);
            if (g < 0)
            {
                groupAs[groups] = nas;
                winners[groups++] = i;
            }
            else if (Compare(paths[i], paths[winners[g]], o, compareMed: true, out _) < 0)
            {
                winners[g] = i;
            }
        }
        int w = winners[0];
        for (int g = 1; g < groups; g++)
            if (Compare(paths[winners[g]], paths[w], o, compareMed: false, out _) < 0)
                w = winners[g];
        return w;
    }

    /// <summary>Orders <paramref name="paths"/> best first (repeated selection, keeping the relative order of the rest).</summary>
    public static void Rank(Span<PathCandidate> paths, BgpRibOptions o)
    {
        for (int i = 0; i < paths.Length - 1; i++)
        {
            int b = SelectBest(paths[i..], o) + i;
            if (b == i) continue;
            var chosen = paths[b];
            paths[i..b].CopyTo(paths[(i + 1)..]);
            paths[i] = chosen;
        }
    }

    /// <summary>
    /// True when <paramref name="other"/> may share the forwarding of the prefix with <paramref name="best"/>
    /// (ECMP): equal on every step before the router id; with identical AS paths unless AS-path relax
    /// is on (then the same length through other ASes is enough).
    /// </summary>
    public static bool IsMultipathEqual(in PathCandidate best, in PathCandidate other, BgpRibOptions o)
    {
        Compare(best, other, o, compareMed: true, out var step);
        if (step is not (BgpDecisionStep.RouterId or BgpDecisionStep.ClusterListLength or BgpDecisionStep.PeerAddress or BgpDecisionStep.PathId or BgpDecisionStep.Equal))
            return false;
        return o.MultipathRelaxAsPath || best.Attrs.AsPath.Equals(other.Attrs.AsPath);
    }
}

/// <summary>The prefix counts of one peer at one moment (immutable: published by the RIB thread, read by any).</summary>
internal sealed class PrefixCountSnapshot(BgpPrefixCounts ipv4, BgpPrefixCounts ipv6)
{
    public BgpPrefixCounts IPv4 { get; } = ipv4;
    public BgpPrefixCounts IPv6 { get; } = ipv6;
}
