using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Netcore.Netlink.Core;

/// <summary>
/// An IPv4 or IPv6 address held by value (no allocation), so parsed objects can keep addresses
/// without an <see cref="IPAddress"/> per field; converted on demand.
/// </summary>
internal readonly struct IpBits : IEquatable<IpBits>
{
    private readonly ulong _hi, _lo;

    private IpBits(ulong hi, ulong lo, byte length)
    {
        _hi = hi;
        _lo = lo;
        Length = length;
    }

    /// <summary>0 when absent, 4 or 16.</summary>
    public byte Length { get; }

    public bool IsNone => Length == 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static IpBits From(ReadOnlySpan<byte> v)
    {
        if (v.Length == 4)
            return new IpBits(0, BinaryPrimitives.ReadUInt32BigEndian(v), 4);
        if (v.Length == 16)
            return new IpBits(BinaryPrimitives.ReadUInt64BigEndian(v), BinaryPrimitives.ReadUInt64BigEndian(v[8..]), 16);
        NetlinkFormatException.Throw($"address attribute of {v.Length} bytes (expected 4 or 16)");
        return default;
    }

    public static IpBits From(IPAddress? a)
    {
        if (a is null)
            return default;
        Span<byte> b = stackalloc byte[16];
        a.TryWriteBytes(b, out int n);
        return From(b[..n]);
    }

    public IPAddress? ToAddress()
    {
        if (Length == 0)
            return null;
        Span<byte> b = stackalloc byte[16];
        Write(b);
        return new IPAddress(b[..Length]);
    }

    public void Write(Span<byte> dest)
    {
        if (Length == 4)
            BinaryPrimitives.WriteUInt32BigEndian(dest, (uint)_lo);
        else
        {
            BinaryPrimitives.WriteUInt64BigEndian(dest, _hi);
            BinaryPrimitives.WriteUInt64BigEndian(dest[8..], _lo);
        }
    }

    /// <summary>True when bits beyond <paramref name="prefixLength"/> are set (not a canonical prefix).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool HasHostBits(int prefixLength)
    {
        if (Length == 4)
            return prefixLength < 32 && ((uint)_lo & (uint.MaxValue >> prefixLength)) != 0;
        if (prefixLength >= 128)
            return false;
        if (prefixLength >= 64)
            return (_lo & (ulong.MaxValue >> (prefixLength - 64))) != 0;
        return _lo != 0 || (_hi & (ulong.MaxValue >> prefixLength)) != 0;
    }

    public void WriteAttr(NetlinkWriter w, ushort type) => Write(w.Attr(type, Length));

    public AddressFamily Family => Length == 4 ? AddressFamily.InterNetwork : Length == 16 ? AddressFamily.InterNetworkV6 : AddressFamily.Unspecified;

    public bool Equals(IpBits other) => _hi == other._hi && _lo == other._lo && Length == other.Length;

    public override bool Equals(object? obj) => obj is IpBits b && Equals(b);

    public override int GetHashCode() => HashCode.Combine(_hi, _lo, Length);
}

internal static class Af
{
    public const byte Unspec = 0, Inet = 2, Inet6 = 10, Bridge = 7;

    public static byte Of(AddressFamily f) => f switch
    {
        AddressFamily.InterNetwork => Inet,
        AddressFamily.InterNetworkV6 => Inet6,
        _ => Unspec,
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static AddressFamily To(byte f) => f switch
    {
        Inet => AddressFamily.InterNetwork,
        Inet6 => AddressFamily.InterNetworkV6,
        _ => AddressFamily.Unspecified,
    };
}
