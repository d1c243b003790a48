using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Netcore.LoadBalancer.Maglev;

namespace Netcore.LoadBalancer.DataPlane;

/// <summary>How a service's packets are carried to the backend (lb.h LB_ENCAP_*).</summary>
public enum Encapsulation : byte
{
    /// <summary>IP in IP as Katran does: IPv4 protocol 4 / IPv6 next header 41 (RFC 2003, RFC 2473).</summary>
    Ipip = 1,

    /// <summary>IP in UDP with a GUE variant 0 header, as Unimog does (draft-ietf-intarea-gue-09 3.1).</summary>
    Gue = 2,
}

/// <summary>
/// Names, limits and value encodings of the XDP program's maps (bpf/lb.h). The managed structs
/// mirror the C structs byte for byte; LbMapLayoutTests compares them with gcc's offsetof/sizeof.
/// </summary>
internal static class LbMaps
{
    public const string Vips = "lb_vips";
    public const string Backends = "lb_backends";
    public const string Maglev = "lb_maglev";
    public const string Config = "lb_config";
    public const string ServiceStats = "lb_svc_stats";
    public const string BackendStats = "lb_be_stats";
    public const string Global = "lb_global";
    public const string Flows = "lb_flows";
    public const string Flows6 = "lb_flows6";
    public const string Layout = "lb_layout";
    public const string IcmpLimit = "lb_icmp_limit";

    /// <summary>LB_LAYOUT_VERSION: the layout of the pinned maps (lb_layout[0]).</summary>
    public const uint LayoutVersion = 6;

    /// <summary>LB_ICMP4_QUOTE: bytes of the invoking IPv4 packet an ICMP "fragmentation needed" quotes.</summary>
    public const int Icmp4Quote = 576 - 20 - 8;

    /// <summary>LB_ICMP6_QUOTE: bytes of the invoking IPv6 packet an ICMPv6 "packet too big" quotes.</summary>
    public const int Icmp6Quote = 1280 - 40 - 8;

    /// <summary>LB_VIP_BUCKETS: buckets of lb_vips (a power of two).</summary>
    public const int VipBuckets = 4096;

    /// <summary>LB_VIP_WAYS: service slots per lb_vips bucket.</summary>
    public const int VipWays = 4;

    /// <summary>LB_VIP_HASH_MUL: the multiplier of the bucket hash.</summary>
    public const uint VipHashMul = 0x9E3779B1u;

    /// <summary>LB_FLOW_SET_BITS: log2 of the sets of the flow memory.</summary>
    public const int FlowSetBits = 18;

    /// <summary>LB_FLOW_SETS: sets of the flow memory (two ways each).</summary>
    public const int FlowSets = 1 << FlowSetBits;

    /// <summary>LB_FLOW4_UDP: lb_flow4.tag of a UDP flow.</summary>
    public const ulong Flow4Udp = 1UL << 47;

    /// <summary>LB_FLOW4_VALID: lb_flow4.tag of an entry in use.</summary>
    public const ulong Flow4Valid = 1UL << 63;

    /// <summary>LB_FLOW4_CHECK: the check bits of lb_flow4.tag.</summary>
    public const ulong Flow4Check = 0x7fffUL << 32;

    /// <summary>LB_FLOW4_KEY: the bits of lb_flow4.tag that are key (all but the backend id).</summary>
    public const ulong Flow4Key = Flow4Valid | 0xffff_ffff_ffffUL;

    /// <summary>LB_FLOW6_SET_BITS: log2 of the sets of the IPv6 flow memory.</summary>
    public const int Flow6SetBits = 17;

    /// <summary>LB_FLOW6_KEY: the lb_flow6.tag bits that are key (ports, UDP, valid).</summary>
    public const ulong Flow6Key = Flow4Valid | Flow4Udp | 0xffffffffUL;

    /// <summary>LB_FLOW_SET_MUL: the multiplier of the flow memory's set hash.</summary>
    public const ulong FlowSetMul = 0x9E3779B97F4A7C15UL;

    /// <summary>LB_BE_F_DOWN: the backend failed its health check; remembered flows are re-hashed.</summary>
    public const byte BackendDown = 1;

    /// <summary>LB_MAX_SERVICES: service ids are below this.</summary>
    public const int MaxServices = 512;

    /// <summary>
    /// LB_SVC_RETIRED: lb_svc_stats[LB_SVC_RETIRED + id] holds what removed backends of service id
    /// counted (written by the daemon only, see <see cref="XdpDataPlane.ClearBackend"/>).
    /// </summary>
    public const int ServiceRetired = MaxServices;

    /// <summary>LB_MAX_BACKENDS: backend ids are below this.</summary>
    public const int MaxBackends = 4096;

    /// <summary>LB_NO_BACKEND: a ring entry that drops the flow.</summary>
    public const uint NoBackend = 0xffffffffu;

    /// <summary>BPF_F_INNER_MAP (include/uapi/linux/bpf.h): rings of any size fit the lb_maglev template.</summary>
    public const uint InnerMapFlag = 1u << 12;

    public const byte FamilyV4 = 4;
    public const byte FamilyV6 = 6;

    /// <summary>The raw bytes of a map key or value, as the kernel expects them.</summary>
    public static byte[] Bytes<T>(in T value) where T : unmanaged =>
        MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)).ToArray();

    /// <summary>
    /// The values of a Maglev ring: table entry i (an index into the builder's backend list) becomes
    /// the backend id <paramref name="backendIds"/>[index]; <see cref="MaglevTable.NoBackend"/> becomes
    /// <see cref="NoBackend"/>.
    /// </summary>
    public static uint[] RingValues(MaglevTable table, ReadOnlySpan<uint> backendIds)
    {
        var values = new uint[table.Size];
        ReadOnlySpan<int> entries = table.Entries;
        for (int i = 0; i < values.Length; i++)
            values[i] = entries[i] < 0 ? NoBackend : backendIds[entries[i]];
        return values;
    }

    /// <summary>LB_GUE_CHAIN_LEN: bytes of GUE private data that carry an IPv4 second hop (lb.h).</summary>
    public const int GueChainLength = 4;

    /// <summary>LB_GUE_CHAIN6_LEN: bytes of GUE private data that carry an IPv6 second hop (lb.h).</summary>
    public const int GueChain6Length = 16;

    /// <summary>LB_RING_FIRST (lb.h): the slot's backend.</summary>
    public static uint RingFirst(uint value) => value == NoBackend ? NoBackend : value & 0xffff;

    /// <summary>LB_RING_SECOND (lb.h): the slot's second hop, 0 for none.</summary>
    public static uint RingSecond(uint value) => value == NoBackend ? 0 : value >> 16;

    /// <summary>
    /// Daisy chaining (lb.h, Unimog): <paramref name="firsts"/> (a new ring's backend ids) with the
    /// second hops written in. A slot whose backend changed from <paramref name="previous"/> gets the
    /// backend it had as its second hop; a slot that kept its backend keeps its second hop. A second
    /// hop is kept only while <paramref name="canBeSecond"/>(first, second) says so (the second is
    /// still the service's, not down, and of the first's address family: its address rides in the
    /// GUE header of the first's outer family) and differs from the first.
    /// </summary>
    public static uint[] WithSecondHops(uint[] firsts, uint[]? previous, Func<uint, uint, bool> canBeSecond)
    {
        ArgumentNullException.ThrowIfNull(firsts);
        ArgumentNullException.ThrowIfNull(canBeSecond);
        var values = new uint[firsts.Length];
        bool same = previous is not null && previous.Length == firsts.Length;
        for (int i = 0; i < values.Length; i++)
        {
            uint first = firsts[i];
            if (first == NoBackend)
            {
                values[i] = NoBackend;
                continue;
            }
            uint second = 0;
            if (same)
            {
                uint was = RingFirst(previous![i]);
                second = was != first ? (was == NoBackend ? 0 : was) : RingSecond(previous[i]);
            }
            if (second == first || (second != 0 && !canBeSecond(first, second)))
                second = 0;
            values[i] = first | (second << 16);
        }
        return values;
    }

    /// <summary>lb_vip_bucket_of (lb.h): the lb_vips bucket of a service key.</summary>
    public static unsafe uint VipBucket(in LbServiceKey key)
    {
        fixed (LbServiceKey* k = &key)
        {
            var w = new ReadOnlySpan<uint>(k, 5);
            return ((w[0] ^ w[1] ^ w[2] ^ w[3] ^ w[4]) * VipHashMul) >> 20;
        }
    }

    /// <summary>lb_flow6_mix (lb.h): the product the set of an IPv6 flow comes from.</summary>
    public static ulong Flow6Mix(ulong s0, ulong s1, ulong d0, ulong d1, uint ports) =>
        ((((s0 ^ d0) * FlowSetMul) ^ s1 ^ d1 ^ ((ulong)ports << 16)) * FlowSetMul);

    /// <summary>lb_flow6_set_of (lb.h).</summary>
    public static uint Flow6Set(ulong m) => (uint)(m >> (64 - Flow6SetBits));

    /// <summary>lb_flow4_mix (lb.h): the product the set, check bits and entropy of an IPv4 flow come from.</summary>
    public static ulong Flow4Mix(ulong addrs, uint ports) => (addrs ^ ((ulong)ports << 16)) * FlowSetMul;

    /// <summary>lb_flow4_set_of (lb.h).</summary>
    public static uint Flow4Set(ulong m) => (uint)(m >> (64 - FlowSetBits));

    /// <summary>lb_flow4_check (lb.h): bits 31-45 of m in tag bits 32-46.</summary>
    public static ulong Flow4CheckBits(ulong m) => (m << 1) & Flow4Check;

    /// <summary>lb_flow4_entropy (lb.h): the GUE source port / IPv6 flow label entropy of an IPv4 flow.</summary>
    public static uint Flow4Entropy(ulong key) => (uint)(key >> 32) & 0x7fff;

    /// <summary>
    /// The flow memory key of an IPv4 packet (lb.h lb_flows): <c>addrs</c> (source and
    /// destination address as the 8 bytes lie in the header) and the key bits of the tag (ports as
    /// they lie in the packet, check bits, UDP, valid). <paramref name="ipHeader"/> starts at the
    /// IPv4 header; the ports follow its IHL.
    /// </summary>
    public static (ulong Addrs, ulong Key) FlowKey4(ReadOnlySpan<byte> ipHeader)
    {
        int ihl = (ipHeader[0] & 0xf) * 4;
        ulong addrs = BinaryPrimitives.ReadUInt64LittleEndian(ipHeader[12..]);
        uint ports = BinaryPrimitives.ReadUInt32LittleEndian(ipHeader[ihl..]);
        ulong m = Flow4Mix(addrs, ports);
        return (addrs, ports | Flow4CheckBits(m) | (ipHeader[9] == (byte)ProtocolType.Udp ? Flow4Udp : 0) | Flow4Valid);
    }

    /// <summary>
    /// The flow memory key of an IPv6 packet (lb.h lb_flows6): the source and destination
    /// addresses as two 64-bit words each (as they lie in the header, read little-endian) and the
    /// key bits of the tag (ports as they lie in the packet, UDP, valid). <paramref name="ipHeader"/>
    /// starts at the IPv6 header; the ports follow it.
    /// </summary>
    public static LbFlow6Key FlowKey6(ReadOnlySpan<byte> ipHeader)
    {
        uint ports = BinaryPrimitives.ReadUInt32LittleEndian(ipHeader[40..]);
        return new LbFlow6Key(
            BinaryPrimitives.ReadUInt64LittleEndian(ipHeader[8..]), BinaryPrimitives.ReadUInt64LittleEndian(ipHeader[16..]),
            BinaryPrimitives.ReadUInt64LittleEndian(ipHeader[24..]), BinaryPrimitives.ReadUInt64LittleEndian(ipHeader[32..]),
            ports | (ipHeader[6] == (byte)ProtocolType.Udp ? Flow4Udp : 0) | Flow4Valid);
    }

    internal static void WriteAddress(IPAddress address, Span<byte> addr16, out byte family)
    {
        addr16.Clear();
        if (!address.TryWriteBytes(addr16, out int written) || (written != 4 && written != 16))
            throw new ArgumentException($"Address {address} is neither IPv4 nor IPv6.", nameof(address));
        family = address.AddressFamily == AddressFamily.InterNetwork ? FamilyV4 : FamilyV6;
    }
}

/// <summary>struct lb_service_key.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LbServiceKey
{
    public fixed byte addr[16];
    public ushort port; // network order
    public byte proto;
    public byte family;

    public static LbServiceKey Create(IPAddress vip, ushort port, ProtocolType protocol)
    {
        if (protocol is not (ProtocolType.Tcp or ProtocolType.Udp))
            throw new ArgumentException($"Services are TCP or UDP, not {protocol}.", nameof(protocol));
        var k = new LbServiceKey
        {
            port = BinaryPrimitives.ReverseEndianness(port),
            proto = (byte)protocol,
        };
        LbMaps.WriteAddress(vip, new Span<byte>(k.addr, 16), out k.family);
        return k;
    }
}

/// <summary>struct lb_service.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LbService
{
    public uint id;
    public uint table_size;
    public byte encap;
    public byte flags;
    public ushort gue_port; // network order

    public static LbService Create(uint id, int tableSize, Encapsulation encap, ushort guePort = 6080)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, (uint)LbMaps.MaxServices);
        return new LbService
        {
            id = id,
            table_size = (uint)tableSize,
            encap = (byte)encap,
            gue_port = BinaryPrimitives.ReverseEndianness(guePort),
        };
    }
}

/// <summary>struct lb_vip: one slot of an lb_vips bucket (family 0 in the key: empty).</summary>
[StructLayout(LayoutKind.Sequential, Size = 32)]
internal struct LbVip
{
    public LbServiceKey key;
    public LbService svc;
}

/// <summary>struct lb_vip_bucket: LB_VIP_WAYS slots.</summary>
[InlineArray(LbMaps.VipWays)]
internal struct LbVipBucket
{
    private LbVip _slot;
}

/// <summary>struct lb_backend (64 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Size = 64)]
internal unsafe struct LbBackend
{
    public fixed byte addr[16];
    public byte family;
    public byte flags;
    public ushort csum_base;
    public uint src_v4; // network order (the address bytes as they are)
    public fixed byte gw_mac[6];
    public ushort mtu;
    public uint service;
    public byte encap;
    public byte reserved0;
    public ushort gue_port; // network order
    public ushort max_inner;
    public ushort reserved1;
    public uint reserved2;
    public ulong ip_tail;

    /// <summary>This backend with lb_config's outer source address, gateway MAC and MTU copied in (lb.h).</summary>
    public readonly LbBackend WithConfig(in LbConfig config)
    {
        var b = this;
        b.src_v4 = config.src_v4;
        b.mtu = config.mtu;
        for (int i = 0; i < 6; i++)
            b.gw_mac[i] = config.gw_mac[i];
        return b;
    }

    /// <summary>
    /// This backend with the fields lb.h derives from the others filled in: for an IPv4 backend
    /// the one's complement sum of the outer IPv4 header's constant words (RFC 1071), read
    /// little-endian as lb.c does, and the header's bytes 24-31 without the checksum; for any,
    /// the largest inner packet whose encapsulation fits the MTU.
    /// </summary>
    public readonly LbBackend WithTemplate()
    {
        var b = this;
        b.csum_base = 0;
        b.ip_tail = 0;
        uint daddr = b.addr[0] | ((uint)b.addr[1] << 8) | ((uint)b.addr[2] << 16) | ((uint)b.addr[3] << 24);
        if (b.family == LbMaps.FamilyV4)
        {
            uint sum = 0x0045 + 0x0040 + 0x0040 + (b.src_v4 & 0xffff) + (b.src_v4 >> 16) + (daddr & 0xffff) + (daddr >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            b.csum_base = (ushort)sum;
            b.ip_tail = ((ulong)b.src_v4 << 16) | ((ulong)(daddr & 0xffff) << 48);
        }
        // GUE reserves room for a second hop (lb.h): LB_GUE_CHAIN_LEN to an IPv4 backend,
        // LB_GUE_CHAIN6_LEN to an IPv6 one, chained or not, so one MTU holds for every packet of a flow.
        bool gue = b.encap == (byte)Encapsulation.Gue, v6 = b.family == LbMaps.FamilyV6;
        int overhead = (v6 ? 40 : 20) + (gue ? 12 + (v6 ? LbMaps.GueChain6Length : LbMaps.GueChainLength) : 0);
        b.max_inner = b.mtu == 0 ? ushort.MaxValue : (ushort)Math.Max(0, b.mtu - overhead);
        return b;
    }

    /// <summary>This backend with its service's encapsulation settings copied in (lb.h: remembered flows skip lb_vips).</summary>
    public readonly LbBackend WithService(in LbService svc)
    {
        var b = this;
        b.encap = svc.encap;
        b.gue_port = svc.gue_port;
        return b;
    }

    /// <summary>
    /// True when this entry is in use for <paramref name="address"/> in service
    /// <paramref name="serviceId"/> and marked down (LB_BE_F_DOWN).
    /// </summary>
    public readonly bool MarksDown(IPAddress address, uint serviceId)
    {
        var other = Create(address, serviceId);
        fixed (byte* a = addr)
            return family != 0 && family == other.family && service == serviceId && (flags & LbMaps.BackendDown) != 0 &&
                new ReadOnlySpan<byte>(a, 16).SequenceEqual(new ReadOnlySpan<byte>(other.addr, 16));
    }

    /// <summary>A backend of service <paramref name="serviceId"/> (a backend id belongs to one service).</summary>
    public static LbBackend Create(IPAddress address, uint serviceId, bool down = false)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(serviceId, (uint)LbMaps.MaxServices);
        var b = default(LbBackend);
        LbMaps.WriteAddress(address, new Span<byte>(b.addr, 16), out b.family);
        b.flags = down ? LbMaps.BackendDown : (byte)0;
        b.service = serviceId;
        return b;
    }
}

/// <summary>struct lb_flow4: one way of an IPv4 flow memory set (lb_flows).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LbFlow4
{
    public ulong addrs;
    public ulong tag; // key bits | backend id << 48

    /// <summary>The backend id of the entry.</summary>
    public readonly uint Backend => (uint)(tag >> 48) & 0x7fff;
}

/// <summary>struct lb_flow4_set: the two ways of an IPv4 flow memory set.</summary>
[InlineArray(2)]
internal struct LbFlow4Set
{
    private LbFlow4 _way;
}

/// <summary>struct lb_flow6: one way of an IPv6 flow memory set (lb_flows6).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LbFlow6
{
    public ulong saddr0, saddr1, daddr0, daddr1;
    public ulong tag; // key bits | backend id << 48
    public uint hash;
    public uint reserved;

    /// <summary>The backend id of the entry.</summary>
    public readonly uint Backend => (uint)(tag >> 48) & 0x7fff;

    /// <summary>True when this entry is the flow of <paramref name="k"/> (lb.c flow6_way).</summary>
    public readonly bool Is(in LbFlow6Key k) =>
        saddr0 == k.S0 && saddr1 == k.S1 && daddr0 == k.D0 && daddr1 == k.D1 && (tag & LbMaps.Flow6Key) == k.Key;
}

/// <summary>An IPv6 flow's key in lb_flows6: address words and the tag's key bits (<see cref="LbMaps.FlowKey6"/>).</summary>
internal readonly record struct LbFlow6Key(ulong S0, ulong S1, ulong D0, ulong D1, ulong Key)
{
    /// <summary>Its set (lb_flow6_set_of(lb_flow6_mix(...))).</summary>
    public uint Set => LbMaps.Flow6Set(LbMaps.Flow6Mix(S0, S1, D0, D1, (uint)Key));
}

/// <summary>struct lb_flow6_set: the two ways of an IPv6 flow memory set.</summary>
[InlineArray(2)]
internal struct LbFlow6Set
{
    private LbFlow6 _way;
}

/// <summary>struct lb_config.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LbConfig
{
    public fixed byte gw_mac[6];
    public ushort mtu;
    public uint src_v4; // network order (the address bytes as they are)
    public fixed byte src_v6[16];
    public uint hash_seed;
    public uint icmp_rate;

    /// <summary>The default of <see cref="icmp_rate"/>: ICMP "too big" messages per second for the node.</summary>
    public const uint DefaultIcmpRate = 1000;

    public static LbConfig Create(ReadOnlySpan<byte> gatewayMac, IPAddress? sourceV4, IPAddress? sourceV6, ushort mtu, uint hashSeed, uint icmpRate = DefaultIcmpRate)
    {
        if (gatewayMac.Length != 6)
            throw new ArgumentException("A MAC address has 6 bytes.", nameof(gatewayMac));
        var c = new LbConfig { mtu = mtu, hash_seed = hashSeed, icmp_rate = icmpRate };
        gatewayMac.CopyTo(new Span<byte>(c.gw_mac, 6));
        if (sourceV4 is not null)
        {
            Span<byte> b = stackalloc byte[4];
            if (sourceV4.AddressFamily != AddressFamily.InterNetwork || !sourceV4.TryWriteBytes(b, out _))
                throw new ArgumentException($"{sourceV4} is not an IPv4 address.", nameof(sourceV4));
            c.src_v4 = MemoryMarshal.Read<uint>(b);
        }
        if (sourceV6 is not null && (sourceV6.AddressFamily != AddressFamily.InterNetworkV6 || !sourceV6.TryWriteBytes(new Span<byte>(c.src_v6, 16), out _)))
            throw new ArgumentException($"{sourceV6} is not an IPv6 address.", nameof(sourceV6));
        return c;
    }
}

/// <summary>struct lb_stats (one CPU's counters).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LbStats
{
    public ulong packets;
    public ulong bytes;
    public ulong drops;
    public ulong encap_errors;
}

/// <summary>Indices of lb_global.</summary>
internal enum LbGlobalCounter
{
    Pass = 0,
    Fragment = 1,
    Malformed = 2,
    ExtensionHeader = 3,
    TooBig = 4,
    TooBigLimited = 5,
}
