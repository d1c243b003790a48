using System.Buffers.Binary;
using Netcore.Bgp.Capabilities;

namespace Netcore.Bgp.Messages;

/// <summary>An OPEN message (RFC 4271 4.2) with capabilities (RFC 5492).</summary>
internal sealed record OpenMessage(byte Version, ushort MyAs, ushort HoldTime, uint BgpIdentifier, IReadOnlyList<Capability> Capabilities)
{
    /// <summary>AS_TRANS, the 2-octet stand-in for a 4-octet AS (RFC 6793 9).</summary>
    public const ushort AsTrans = 23456;

    /// <summary>The AS number of the sender: the 4-octet AS capability when present (RFC 6793 4.1), else My AS.</summary>
    public uint EffectiveAs => Capabilities.OfType<FourOctetAsCapability>().FirstOrDefault()?.Asn ?? MyAs;

    public T? Find<T>() where T : Capability => Capabilities.OfType<T>().FirstOrDefault();

    public bool Has(CapabilityCode code) => Capabilities.Any(c => c.Code == code);

    public int Size
    {
        get
        {
            int caps = Capabilities.Sum(c => c.Size);
            // One optional parameter of type 2 holds all capabilities while it fits in 255 octets;
            // otherwise the RFC 9072 extended format is used.
            return caps + 2 <= 255 ? BgpMessageHeader.Size + 10 + (caps > 0 ? 2 + caps : 0) : BgpMessageHeader.Size + 10 + 3 + 3 + caps;
        }
    }

    public int Write(Span<byte> d)
    {
        int size = Size;
        BgpMessageHeader.Write(d, BgpMessageType.Open, size);
        d[19] = Version;
        BinaryPrimitives.WriteUInt16BigEndian(d[20..], MyAs);
        BinaryPrimitives.WriteUInt16BigEndian(d[22..], HoldTime);
        BinaryPrimitives.WriteUInt32BigEndian(d[24..], BgpIdentifier);
        int caps = Capabilities.Sum(c => c.Size);
        int p;
        if (caps == 0)
        {
            d[28] = 0;
            return size;
        }
        if (caps + 2 <= 255)
        {
            d[28] = (byte)(caps + 2);
            d[29] = 2; // RFC 5492 4: optional parameter type 2 = Capabilities
            d[30] = (byte)caps;
            p = 31;
        }
        else
        {
            // RFC 9072 2: Non-Ext OP Len 255, Non-Ext OP Type 255, then a 2-octet length,
            // and each parameter's length is 2 octets.
            d[28] = 255;
            d[29] = 255;
            BinaryPrimitives.WriteUInt16BigEndian(d[30..], (ushort)(caps + 3));
            d[32] = 2;
            BinaryPrimitives.WriteUInt16BigEndian(d[33..], (ushort)caps);
            p = 35;
        }
        foreach (var c in Capabilities)
        {
            d[p] = (byte)c.Code;
            d[p + 1] = checked((byte)c.ValueLength);
            c.WriteValue(d.Slice(p + 2, c.ValueLength));
            p += c.Size;
        }
        return size;
    }

    public byte[] ToArray()
    {
        byte[] b = new byte[Size];
        Write(b);
        return b;
    }

    /// <summary>Decodes the body (after the 19-octet header). Throws <see cref="BgpProtocolException"/> with the RFC 4271 6.2 error.</summary>
    public static OpenMessage Read(ReadOnlySpan<byte> body)
    {
        if (body.Length < 10)
            throw Error(BgpOpenError.UnsupportedOptionalParameter);
        byte version = body[0];
        // RFC 4271 6.2: unsupported version -> Unsupported Version Number, data = largest supported (2 octets).
        if (version != 4)
            throw new BgpProtocolException(new BgpNotification(BgpErrorCode.OpenMessage, (byte)BgpOpenError.UnsupportedVersionNumber, new byte[] { 0, 4 }));
        ushort myAs = BinaryPrimitives.ReadUInt16BigEndian(body[1..]);
        ushort hold = BinaryPrimitives.ReadUInt16BigEndian(body[3..]);
        uint id = BinaryPrimitives.ReadUInt32BigEndian(body[5..]);
        // RFC 4271 6.2: hold time of 1 or 2 seconds MUST be rejected.
        if (hold is 1 or 2)
            throw Error(BgpOpenError.UnacceptableHoldTime);
        // RFC 6286 2.2: the BGP identifier is a non-zero 4-octet number.
        if (id == 0)
            throw Error(BgpOpenError.BadBgpIdentifier);
        int optLen = body[9];
        var rest = body[10..];
        bool extended = false;
        // RFC 9072 2: Non-Ext OP Len 255 with Non-Ext OP Type 255 announces the extended format.
        if (optLen == 255 && rest.Length >= 3 && rest[0] == 255)
        {
            extended = true;
            optLen = BinaryPrimitives.ReadUInt16BigEndian(rest[1..]);
            rest = rest[3..];
        }
        // RFC 4271 6.2 / 6.1: the optional parameters must fill the message exactly.
        if (optLen != rest.Length)
            throw new BgpProtocolException(new BgpNotification(BgpErrorCode.MessageHeader, (byte)BgpHeaderError.BadMessageLength));
        var caps = new List<Capability>();
        while (rest.Length > 0)
        {
            int hdr = extended ? 3 : 2;
            if (rest.Length < hdr)
                throw Error(BgpOpenError.UnsupportedOptionalParameter);
            byte type = rest[0];
            int len = extended ? BinaryPrimitives.ReadUInt16BigEndian(rest[1..]) : rest[1];
            if (rest.Length < hdr + len)
                throw Error(BgpOpenError.UnsupportedOptionalParameter);
            var value = rest.Slice(hdr, len);
            rest = rest[(hdr + len)..];
            // RFC 4271 6.2: an optional parameter we do not recognize -> Unsupported Optional Parameter.
            if (type != 2)
                throw Error(BgpOpenError.UnsupportedOptionalParameter);
            while (value.Length > 0)
            {
                // RFC 5492 4: code(1) length(1) value.
                if (value.Length < 2 || value.Length < 2 + value[1])
                    throw new BgpProtocolException(new BgpNotification(BgpErrorCode.OpenMessage, (byte)BgpOpenError.UnsupportedCapability));
                caps.Add(Capability.Decode(value[0], value.Slice(2, value[1])));
                value = value[(2 + value[1])..];
            }
        }
        return new OpenMessage(version, myAs, hold, id, caps);
    }

    private static BgpProtocolException Error(BgpOpenError e) => new(new BgpNotification(BgpErrorCode.OpenMessage, (byte)e));

    public bool Equals(OpenMessage? other) => other is not null && Version == other.Version && MyAs == other.MyAs && HoldTime == other.HoldTime
        && BgpIdentifier == other.BgpIdentifier && Capabilities.SequenceEqual(other.Capabilities);

    public override int GetHashCode() => HashCode.Combine(MyAs, HoldTime, BgpIdentifier, Capabilities.Count);
}
