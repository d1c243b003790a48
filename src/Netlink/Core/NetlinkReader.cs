using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Netcore.Netlink.Core;

/// <summary>One netlink message viewed in place: its header fields and its payload.</summary>
internal readonly ref struct NetlinkMessage
{
    public NetlinkMessage(ushort type, ushort flags, uint seq, uint pid, ReadOnlySpan<byte> payload)
    {
        Type = type;
        Flags = flags;
        Seq = seq;
        PortId = pid;
        Payload = payload;
    }

    public ushort Type { get; }
    public ushort Flags { get; }
    public uint Seq { get; }
    public uint PortId { get; }

    /// <summary>Bytes after the nlmsghdr, up to nlmsg_len.</summary>
    public ReadOnlySpan<byte> Payload { get; }

    /// <summary>Reads the family header at the start of the payload; a longer header from a newer kernel is accepted.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public T Header<T>() where T : unmanaged
    {
        if (Payload.Length < Unsafe.SizeOf<T>())
            NetlinkFormatException.Throw($"message type {Type}: payload of {Payload.Length} bytes is shorter than its {typeof(T).Name} header ({Unsafe.SizeOf<T>()} bytes)");
        return MemoryMarshal.Read<T>(Payload);
    }

    /// <summary>The attributes following a family header of <paramref name="headerSize"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AttributeReader Attributes(int headerSize)
    {
        int start = Nl.Align(headerSize);
        if (start > Payload.Length)
            NetlinkFormatException.Throw($"message type {Type}: payload of {Payload.Length} bytes is shorter than its {headerSize}-byte header");
        return new AttributeReader(Payload[start..]);
    }
}

/// <summary>
/// Walks the messages of one datagram in place (no copies). A message whose nlmsg_len is shorter
/// than the header or longer than the bytes left is a format error (linux/netlink.h NLMSG_OK).
/// </summary>
internal ref struct NetlinkMessageReader
{
    private ReadOnlySpan<byte> _rest;

    public NetlinkMessageReader(ReadOnlySpan<byte> datagram) => _rest = datagram;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool TryRead(out NetlinkMessage message)
    {
        if (_rest.Length < Nl.NLMSG_HDRLEN)
        {
            // NLMSG_OK: fewer bytes than a header left is the end of the datagram (kernel pads to 4).
            if (_rest.Length != 0 && _rest.IndexOfAnyExcept((byte)0) >= 0)
                NetlinkFormatException.Throw($"{_rest.Length} trailing bytes after the last netlink message");
            message = default;
            return false;
        }
        uint len = BinaryPrimitives.ReadUInt32LittleEndian(_rest);
        if (len < Nl.NLMSG_HDRLEN || len > (uint)_rest.Length)
            NetlinkFormatException.Throw($"nlmsg_len {len} is outside [16, {_rest.Length}]");
        message = new NetlinkMessage(
            BinaryPrimitives.ReadUInt16LittleEndian(_rest[4..]),
            BinaryPrimitives.ReadUInt16LittleEndian(_rest[6..]),
            BinaryPrimitives.ReadUInt32LittleEndian(_rest[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(_rest[12..]),
            _rest[Nl.NLMSG_HDRLEN..(int)len]);
        int next = Math.Min(Nl.Align((int)len), _rest.Length);
        _rest = _rest[next..];
        return true;
    }
}

/// <summary>
/// Walks a list of attributes in place. nla_len below 4 or beyond the bytes left is a format
/// error (linux/netlink.h nla_ok); the type is reported without NLA_F_NESTED/NLA_F_NET_BYTEORDER.
/// </summary>
internal ref struct AttributeReader
{
    private ReadOnlySpan<byte> _rest;

    public AttributeReader(ReadOnlySpan<byte> attributes) => _rest = attributes;

    /// <summary>The attributes not read yet.</summary>
    public readonly ReadOnlySpan<byte> Rest() => _rest;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool TryRead(out ushort type, out ReadOnlySpan<byte> value)
    {
        if (_rest.Length < Nl.NLA_HDRLEN)
        {
            type = 0;
            value = default;
            return false;
        }
        ushort len = BinaryPrimitives.ReadUInt16LittleEndian(_rest);
        if (len < Nl.NLA_HDRLEN || len > _rest.Length)
            NetlinkFormatException.Throw($"nla_len {len} is outside [4, {_rest.Length}]");
        type = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(_rest[2..]) & Nl.NLA_TYPE_MASK);
        value = _rest[Nl.NLA_HDRLEN..len];
        _rest = _rest[Math.Min(Nl.Align(len), _rest.Length)..];
        return true;
    }
}

/// <summary>Typed reads of attribute payloads; a payload too short for its type is a format error.</summary>
internal static class Attr
{
    public static byte U8(ReadOnlySpan<byte> v) => v.Length >= 1 ? v[0] : Short<byte>(v, 1);

    public static ushort U16(ReadOnlySpan<byte> v) => v.Length >= 2 ? BinaryPrimitives.ReadUInt16LittleEndian(v) : Short<ushort>(v, 2);

    public static uint U32(ReadOnlySpan<byte> v) => v.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(v) : Short<uint>(v, 4);

    public static int S32(ReadOnlySpan<byte> v) => v.Length >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(v) : Short<int>(v, 4);

    public static ulong U64(ReadOnlySpan<byte> v) => v.Length >= 8 ? BinaryPrimitives.ReadUInt64LittleEndian(v) : Short<ulong>(v, 8);

    public static ushort Be16(ReadOnlySpan<byte> v) => v.Length >= 2 ? BinaryPrimitives.ReadUInt16BigEndian(v) : Short<ushort>(v, 2);

    public static uint Be32(ReadOnlySpan<byte> v) => v.Length >= 4 ? BinaryPrimitives.ReadUInt32BigEndian(v) : Short<uint>(v, 4);

    /// <summary>A string attribute; stops at the first NUL (NLA_NUL_STRING) and accepts none (NLA_STRING).</summary>
    public static string String(ReadOnlySpan<byte> v)
    {
        int nul = v.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul >= 0 ? v[..nul] : v);
    }

    /// <summary>An address of 4 or 16 bytes; other lengths are a format error.</summary>
    public static IPAddress Address(ReadOnlySpan<byte> v)
    {
        if (v.Length != 4 && v.Length != 16)
            NetlinkFormatException.Throw($"address attribute of {v.Length} bytes (expected 4 or 16)");
        return new IPAddress(v);
    }

    [DoesNotReturn]
    private static T Short<T>(ReadOnlySpan<byte> v, int need)
    {
        NetlinkFormatException.Throw($"attribute payload of {v.Length} bytes, {need} needed");
        return default!;
    }
}
