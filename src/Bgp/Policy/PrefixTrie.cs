using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Netcore.Bgp.Policy;

/// <summary>
/// An immutable binary trie over prefix bits, one per address family, whose nodes carry lists of
/// payload indices (prefix-list entries, ROAs). Built once; lookups walk at most one node per bit of
/// the queried prefix and never allocate.
/// </summary>
internal sealed class PrefixTrie
{
    // Node i: children at _child[2i] (bit 0) and _child[2i+1] (bit 1), -1 when absent.
    // Payload indices of node i are _payload[_start[i] .. _start[i+1]).
    private readonly int[] _child;
    private readonly int[] _start;
    private readonly int[] _payload;
    private readonly int _root4, _root6;

    private PrefixTrie(int[] child, int[] start, int[] payload, int root4, int root6)
    {
        _child = child;
        _start = start;
        _payload = payload;
        _root4 = root4;
        _root6 = root6;
    }

    /// <summary>Builds a trie where payload index i sits at the node of <paramref name="prefixes"/>[i].</summary>
    public static PrefixTrie Build(IReadOnlyList<BgpPrefix> prefixes)
    {
        var child = new List<int> { -1, -1, -1, -1 }; // node 0 = IPv4 root, node 1 = IPv6 root
        var lists = new List<List<int>?> { null, null };
        for (int i = 0; i < prefixes.Count; i++)
        {
            var p = prefixes[i];
            UInt128 bits = Bits(p);
            int node = p.IsIPv6 ? 1 : 0;
            for (int d = 0; d < p.Length; d++)
            {
                int bit = (int)((bits >> (127 - d)) & 1);
                int next = child[2 * node + bit];
                if (next < 0)
                {
                    next = lists.Count;
                    lists.Add(null);
                    child.Add(-1);
                    child.Add(-1);
                    child[2 * node + bit] = next;
                }
                node = next;
            }
            (lists[node] ??= []).Add(i);
        }
        var start = new int[lists.Count + 1];
        var payload = new int[prefixes.Count];
        int k = 0;
        for (int n = 0; n < lists.Count; n++)
        {
            start[n] = k;
            if (lists[n] is { } l)
                foreach (int x in l) payload[k++] = x;
        }
        start[lists.Count] = k;
        return new PrefixTrie([.. child], start, payload, 0, 1);
    }

    /// <summary>The prefix bits left-aligned in 128 bits (IPv4 in the top 32), host bits zero.</summary>
    internal static UInt128 Bits(BgpPrefix p)
    {
        Span<byte> b = stackalloc byte[16];
        b.Clear();
        p.WriteWire(b);
        return BinaryPrimitives.ReadUInt128BigEndian(b);
    }

    /// <summary>A host prefix (/32 or /128) for an address; IPv4-mapped IPv6 addresses count as IPv4.</summary>
    internal static BgpPrefix Host(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
            address = address.MapToIPv4();
        return new BgpPrefix(address, address.AddressFamily == AddressFamily.InterNetworkV6 ? 128 : 32);
    }

    /// <summary>
    /// Walks the nodes on the path of <paramref name="prefix"/> from the root down to its own length
    /// (every stored prefix that covers it or equals it) and calls <paramref name="visitor"/> with
    /// each payload index and the depth of its node.
    /// </summary>
    public void VisitCovering<TVisitor>(BgpPrefix prefix, ref TVisitor visitor) where TVisitor : struct, ICoverVisitor
    {
        UInt128 bits = Bits(prefix);
        int node = prefix.IsIPv6 ? _root6 : _root4;
        int len = prefix.Length;
        for (int d = 0; ; d++)
        {
            for (int i = _start[node]; i < _start[node + 1]; i++)
                if (!visitor.Visit(_payload[i], d))
                    return;
            if (d == len)
                return;
            int bit = (int)((bits >> (127 - d)) & 1);
            node = _child[2 * node + bit];
            if (node < 0)
                return;
        }
    }
}

/// <summary>Receives the payload indices of covering trie nodes; returns false to stop the walk.</summary>
internal interface ICoverVisitor
{
    bool Visit(int payload, int depth);
}
