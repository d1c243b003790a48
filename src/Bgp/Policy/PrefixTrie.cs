using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Netcore.Bgp.Policy;

/// <summary>
/// An immutable binary trie over prefix bits, one root per address family, whose nodes carry lists of
/// payload indices (prefix-list entries, ROAs). Built once; a lookup walks at most one node per bit of
/// the queried prefix and never allocates. Nodes are 16-byte records laid out in depth-first order,
/// so a chain of single-child nodes (the sparse lower levels of a large list) is contiguous in memory
/// and a walk touches few cache lines.
/// </summary>
internal sealed class PrefixTrie
{
    private struct Node
    {
        public int Child0, Child1;      // node indices, 0 = none (index 0 is never a child: it is a root)
        public int PayloadStart, PayloadEnd;
    }

    /// <summary>Bits resolved by the jump tables: a walk of a prefix this long or longer starts at depth 16.</summary>
    private const int JumpBits = 16;

    /// <summary>Tries with more nodes than this get jump tables (2 x 256 KiB); smaller ones stay cache-resident anyway.</summary>
    private const int JumpThreshold = 1 << 14;

    private readonly Node[] _nodes;
    private readonly int[] _payload;
    private readonly int _root4, _root6;

    // For each value of the top 16 bits: the node at depth 16 on that path (0 = none), or -1 when a
    // node above depth 16 on the path carries payload (the walk must then start at the root).
    private readonly int[]? _jump4, _jump6;

    private PrefixTrie(Node[] nodes, int[] payload, int root4, int root6)
    {
        _nodes = nodes;
        _payload = payload;
        _root4 = root4;
        _root6 = root6;
        if (nodes.Length > JumpThreshold)
        {
            _jump4 = BuildJump(root4);
            _jump6 = BuildJump(root6);
        }
    }

    /// <summary>True when the jump tables were built (for tests).</summary>
    internal bool HasJumpTables => _jump4 is not null;

    private int[] BuildJump(int root)
    {
        var jump = new int[1 << JumpBits];
        Fill(root, 0, 0, false);
        return jump;

        void Fill(int node, int depth, int prefix, bool payloadAbove)
        {
            ref readonly var n = ref _nodes[node];
            if (depth == JumpBits)
            {
                jump[prefix] = payloadAbove ? -1 : node;
                return;
            }
            bool above = payloadAbove || n.PayloadEnd > n.PayloadStart;
            int span = 1 << (JumpBits - depth - 1);
            int zero = prefix, one = prefix | span;
            // A missing child: every slot below it has no node at depth 16; keep -1 when payload is above
            // (0 is what the array already holds).
            if (n.Child0 != 0) Fill(n.Child0, depth + 1, zero, above);
            else if (above) jump.AsSpan(zero, span).Fill(-1);
            if (n.Child1 != 0) Fill(n.Child1, depth + 1, one, above);
            else if (above) jump.AsSpan(one, span).Fill(-1);
        }
    }

    private sealed class BuildNode
    {
        public BuildNode? Zero, One;
        public List<int>? Payload;
    }

    /// <summary>Builds a trie where payload index i sits at the node of <paramref name="prefixes"/>[i].</summary>
    public static PrefixTrie Build(IReadOnlyList<BgpPrefix> prefixes)
    {
        var root4 = new BuildNode();
        var root6 = new BuildNode();
        for (int i = 0; i < prefixes.Count; i++)
        {
            var p = prefixes[i];
            UInt128 bits = Bits(p);
            var node = p.IsIPv6 ? root6 : root4;
            for (int d = 0; d < p.Length; d++)
            {
                bool one = ((bits >> (127 - d)) & 1) != 0;
                node = one ? (node.One ??= new BuildNode()) : (node.Zero ??= new BuildNode());
            }
            (node.Payload ??= []).Add(i);
        }
        var nodes = new List<Node>();
        var payload = new List<int>(prefixes.Count);
        int r4 = Layout(root4, nodes, payload);
        int r6 = Layout(root6, nodes, payload);
        return new PrefixTrie([.. nodes], [.. payload], r4, r6);
    }

    /// <summary>Depth-first pre-order layout (iterative: IPv6 tries are 128 deep).</summary>
    private static int Layout(BuildNode root, List<Node> nodes, List<int> payload)
    {
        var stack = new Stack<(BuildNode Node, int Parent, bool One)>();
        stack.Push((root, -1, false));
        int rootIndex = nodes.Count;
        while (stack.Count > 0)
        {
            var (b, parent, one) = stack.Pop();
            int index = nodes.Count;
            var n = new Node { PayloadStart = payload.Count };
            if (b.Payload is not null) payload.AddRange(b.Payload);
            n.PayloadEnd = payload.Count;
            nodes.Add(n);
            if (parent >= 0)
            {
                var pn = nodes[parent];
                if (one) pn.Child1 = index; else pn.Child0 = index;
                nodes[parent] = pn;
            }
            // Push One first so that Zero is laid out right after its parent.
            if (b.One is not null) stack.Push((b.One, index, true));
            if (b.Zero is not null) stack.Push((b.Zero, index, false));
        }
        return rootIndex;
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
        ulong hi = (ulong)(bits >> 64), lo = (ulong)bits;
        var nodes = _nodes;
        bool v6 = prefix.IsIPv6;
        int node = v6 ? _root6 : _root4;
        int len = prefix.Length;
        int d = 0;
        var jump = v6 ? _jump6 : _jump4;
        if (jump is not null && len >= JumpBits)
        {
            int j = jump[(int)(hi >> (64 - JumpBits))];
            if (j == 0)
                return; // no stored prefix on this path at all
            if (j > 0)
            {
                node = j;
                d = JumpBits;
            }
        }
        for (; ; d++)
        {
            ref readonly var n = ref nodes[node];
            for (int i = n.PayloadStart; i < n.PayloadEnd; i++)
                if (!visitor.Visit(_payload[i], d))
                    return;
            if (d == len)
                return;
            ulong bit = d < 64 ? (hi >> (63 - d)) & 1 : (lo >> (127 - d)) & 1;
            node = bit != 0 ? n.Child1 : n.Child0;
            if (node == 0)
                return;
        }
    }
}

/// <summary>Receives the payload indices of covering trie nodes; returns false to stop the walk.</summary>
internal interface ICoverVisitor
{
    bool Visit(int payload, int depth);
}
