using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Netcore.Bgp;

/// <summary>
/// An IPv4 or IPv6 prefix stored compactly (a 128-bit value and two bytes, no heap object),
/// with the host bits always cleared. This is the key type routes are indexed by.
/// </summary>
public readonly struct BgpPrefix : IEquatable<BgpPrefix>, IComparable<BgpPrefix>
{
    // IPv4 addresses occupy the high 32 bits so that ordering and masking work the same for both families.
    private readonly ulong _hi;
    private readonly ulong _lo;
    private readonly byte _length;
    private readonly bool _isV6;

    private BgpPrefix(UInt128 bits, int length, bool isV6)
    {
        bits &= Mask(length);
        _hi = (ulong)(bits >> 64);
        _lo = (ulong)bits;
        _length = (byte)length;
        _isV6 = isV6;
    }

    /// <summary>Creates a prefix from an address and a length; host bits are cleared.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The length exceeds 32 (IPv4) or 128 (IPv6).</exception>
    public BgpPrefix(IPAddress address, int length)
    {
        ArgumentNullException.ThrowIfNull(address);
        bool v6 = address.AddressFamily == AddressFamily.InterNetworkV6;
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, v6 ? 128 : 32);
        Span<byte> b = stackalloc byte[16];
        b.Clear();
        address.TryWriteBytes(b, out _);
        this = new BgpPrefix(BinaryPrimitives.ReadUInt128BigEndian(b), length, v6);
    }

    private UInt128 Bits => new(_hi, _lo);

    /// <summary>True for an IPv6 prefix.</summary>
    public bool IsIPv6 => _isV6;

    /// <summary>The prefix length in bits.</summary>
    public int Length => _length;

    /// <summary>The address family (AFI) of the prefix.</summary>
    public BgpAfi Afi => _isV6 ? BgpAfi.IPv6 : BgpAfi.IPv4;

    /// <summary>The network address.</summary>
    public IPAddress Address
    {
        get
        {
            Span<byte> b = stackalloc byte[16];
            BinaryPrimitives.WriteUInt128BigEndian(b, Bits);
            return new IPAddress(_isV6 ? b : b[..4]);
        }
    }

    /// <summary>Parses "10.0.0.0/8" or "2001:db8::/32"; a bare address is a host prefix.</summary>
    public static BgpPrefix Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out var p) ? p : throw new FormatException($"'{text}' is not an IP prefix");
    }

    /// <summary>Tries to parse "address/length".</summary>
    public static bool TryParse([NotNullWhen(true)] string? text, out BgpPrefix prefix)
    {
        prefix = default;
        if (text is null)
            return false;
        int slash = text.IndexOf('/', StringComparison.Ordinal);
        string addr = slash < 0 ? text : text[..slash];
        if (!IPAddress.TryParse(addr, out var ip))
            return false;
        int max = ip.AddressFamily == AddressFamily.InterNetworkV6 ? 128 : 32;
        int len = max;
        if (slash >= 0 && (!int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out len) || len > max))
            return false;
        prefix = new BgpPrefix(ip, len);
        return true;
    }

    /// <summary>True when <paramref name="address"/> lies inside this prefix.</summary>
    public bool Contains(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.IsIPv4MappedToIPv6 && !_isV6)
            address = address.MapToIPv4();
        if ((address.AddressFamily == AddressFamily.InterNetworkV6) != _isV6)
            return false;
        return new BgpPrefix(address, _length).Bits == Bits;
    }

    /// <summary>Number of octets the prefix occupies in NLRI encoding (RFC 4271 4.3).</summary>
    internal int WireBytes => (_length + 7) >> 3;

    /// <summary>Builds a prefix from NLRI bytes (at most 16) already validated against the family's maximum length.</summary>
    internal static BgpPrefix FromWire(ReadOnlySpan<byte> bytes, int length, bool isV6)
    {
        Span<byte> b = stackalloc byte[16];
        b.Clear();
        bytes.CopyTo(b);
        return new BgpPrefix(BinaryPrimitives.ReadUInt128BigEndian(b), length, isV6);
    }

    /// <summary>Writes the significant octets of the prefix (not the length byte).</summary>
    internal void WriteWire(Span<byte> destination)
    {
        Span<byte> b = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128BigEndian(b, Bits);
        b[..WireBytes].CopyTo(destination);
    }

    private static UInt128 Mask(int length) => length == 0 ? UInt128.Zero : UInt128.MaxValue << (128 - length);

    /// <inheritdoc />
    public bool Equals(BgpPrefix other) => _hi == other._hi && _lo == other._lo && _length == other._length && _isV6 == other._isV6;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is BgpPrefix p && Equals(p);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(_hi, _lo, _length, _isV6);

    /// <inheritdoc />
    public int CompareTo(BgpPrefix other)
    {
        int c = _isV6.CompareTo(other._isV6);
        if (c != 0) return c;
        c = Bits.CompareTo(other.Bits);
        return c != 0 ? c : _length.CompareTo(other._length);
    }

    /// <inheritdoc />
    public override string ToString() => $"{Address}/{_length}";

    /// <summary>Equality.</summary>
    public static bool operator ==(BgpPrefix left, BgpPrefix right) => left.Equals(right);

    /// <summary>Inequality.</summary>
    public static bool operator !=(BgpPrefix left, BgpPrefix right) => !left.Equals(right);

    /// <summary>Ordering.</summary>
    public static bool operator <(BgpPrefix left, BgpPrefix right) => left.CompareTo(right) < 0;

    /// <summary>Ordering.</summary>
    public static bool operator >(BgpPrefix left, BgpPrefix right) => left.CompareTo(right) > 0;

    /// <summary>Ordering.</summary>
    public static bool operator <=(BgpPrefix left, BgpPrefix right) => left.CompareTo(right) <= 0;

    /// <summary>Ordering.</summary>
    public static bool operator >=(BgpPrefix left, BgpPrefix right) => left.CompareTo(right) >= 0;
}

/// <summary>Address Family Identifier (IANA "Address Family Numbers").</summary>
public enum BgpAfi : ushort
{
    /// <summary>IPv4.</summary>
    IPv4 = 1,
    /// <summary>IPv6.</summary>
    IPv6 = 2,
}

/// <summary>Subsequent Address Family Identifier (RFC 4760).</summary>
public enum BgpSafi : byte
{
    /// <summary>Unicast forwarding.</summary>
    Unicast = 1,
    /// <summary>Multicast forwarding.</summary>
    Multicast = 2,
}

/// <summary>An AFI/SAFI pair (RFC 4760), e.g. IPv6 unicast.</summary>
/// <param name="Afi">Address family.</param>
/// <param name="Safi">Subsequent address family.</param>
public readonly record struct BgpFamily(BgpAfi Afi, BgpSafi Safi)
{
    /// <summary>IPv4 unicast.</summary>
    public static BgpFamily IPv4Unicast => new(BgpAfi.IPv4, BgpSafi.Unicast);

    /// <summary>IPv6 unicast.</summary>
    public static BgpFamily IPv6Unicast => new(BgpAfi.IPv6, BgpSafi.Unicast);

    /// <inheritdoc />
    public override string ToString() => $"{Afi}/{Safi}";
}
