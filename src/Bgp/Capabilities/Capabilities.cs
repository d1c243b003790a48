using System.Buffers.Binary;
using System.Text;

namespace Netcore.Bgp.Capabilities;

/// <summary>Capability codes (IANA "Capability Codes").</summary>
internal enum CapabilityCode : byte
{
    Multiprotocol = 1,          // RFC 4760 8
    RouteRefresh = 2,           // RFC 2918 2
    ExtendedNextHop = 5,        // RFC 8950 3
    ExtendedMessage = 6,        // RFC 8654 3
    Role = 9,                   // RFC 9234 4.1
    GracefulRestart = 64,       // RFC 4724 3
    FourOctetAs = 65,           // RFC 6793 3
    AddPath = 69,               // RFC 7911 4
    EnhancedRouteRefresh = 70,  // RFC 7313 4
    LongLivedGracefulRestart = 71, // RFC 9494 3
    Fqdn = 73,                  // draft-walton-bgp-hostname-capability
    CiscoRouteRefresh = 128,    // pre-standard route refresh, still sent by some peers
}

/// <summary>ADD-PATH send/receive modes (RFC 7911 4).</summary>
[Flags]
public enum BgpAddPathMode : byte
{
    /// <summary>Not negotiated.</summary>
    None = 0,
    /// <summary>Able to receive multiple paths.</summary>
    Receive = 1,
    /// <summary>Able to send multiple paths.</summary>
    Send = 2,
    /// <summary>Both.</summary>
    Both = 3,
}

/// <summary>BGP roles (RFC 9234 4.1).</summary>
public enum BgpRole : byte
{
    /// <summary>Provider.</summary>
    Provider = 0,
    /// <summary>Route server.</summary>
    RouteServer = 1,
    /// <summary>Route server client.</summary>
    RouteServerClient = 2,
    /// <summary>Customer.</summary>
    Customer = 3,
    /// <summary>Lateral peer.</summary>
    Peer = 4,
}

/// <summary>A capability advertised in OPEN (RFC 5492 4).</summary>
internal abstract record Capability
{
    public abstract CapabilityCode Code { get; }

    /// <summary>Length of the value.</summary>
    public abstract int ValueLength { get; }

    /// <summary>Writes the value.</summary>
    public abstract void WriteValue(Span<byte> destination);

    /// <summary>Total size (code + length + value).</summary>
    public int Size => 2 + ValueLength;

    /// <summary>
    /// Decodes one capability value. Returns an <see cref="UnknownCapability"/> for unknown codes
    /// (RFC 5492 4: unknown capabilities are ignored) and throws for malformed known ones.
    /// </summary>
    public static Capability Decode(byte code, ReadOnlySpan<byte> v)
    {
        switch ((CapabilityCode)code)
        {
            case CapabilityCode.Multiprotocol:
                Require(v.Length == 4, code); // RFC 4760 8: AFI(2) reserved(1) SAFI(1)
                return new MultiprotocolCapability(new BgpFamily((BgpAfi)BinaryPrimitives.ReadUInt16BigEndian(v), (BgpSafi)v[3]));
            case CapabilityCode.RouteRefresh:
                Require(v.Length == 0, code); // RFC 2918 2: length 0
                return new RouteRefreshCapability();
            case CapabilityCode.CiscoRouteRefresh:
                return new UnknownCapability(code, v.ToArray());
            case CapabilityCode.EnhancedRouteRefresh:
                Require(v.Length == 0, code); // RFC 7313 4: length 0
                return new EnhancedRouteRefreshCapability();
            case CapabilityCode.ExtendedMessage:
                Require(v.Length == 0, code); // RFC 8654 3: length 0
                return new ExtendedMessageCapability();
            case CapabilityCode.FourOctetAs:
                Require(v.Length == 4, code); // RFC 6793 3: 4-octet AS
                return new FourOctetAsCapability(BinaryPrimitives.ReadUInt32BigEndian(v));
            case CapabilityCode.Role:
                Require(v.Length == 1, code); // RFC 9234 4.1: length 1
                return new RoleCapability((BgpRole)v[0]);
            case CapabilityCode.ExtendedNextHop:
            {
                Require(v.Length % 6 == 0, code); // RFC 8950 3: tuples of NLRI AFI(2) NLRI SAFI(2) NH AFI(2)
                var list = new List<(BgpFamily, BgpAfi)>();
                for (int i = 0; i < v.Length; i += 6)
                    list.Add((new BgpFamily((BgpAfi)BinaryPrimitives.ReadUInt16BigEndian(v[i..]), (BgpSafi)BinaryPrimitives.ReadUInt16BigEndian(v[(i + 2)..])), (BgpAfi)BinaryPrimitives.ReadUInt16BigEndian(v[(i + 4)..])));
                return new ExtendedNextHopCapability(list);
            }
            case CapabilityCode.AddPath:
            {
                Require(v.Length % 4 == 0, code); // RFC 7911 4: AFI(2) SAFI(1) Send/Receive(1)
                var list = new List<(BgpFamily, BgpAddPathMode)>();
                for (int i = 0; i < v.Length; i += 4)
                    list.Add((new BgpFamily((BgpAfi)BinaryPrimitives.ReadUInt16BigEndian(v[i..]), (BgpSafi)v[i + 2]), (BgpAddPathMode)(v[i + 3] & 3)));
                return new AddPathCapability(list);
            }
            case CapabilityCode.GracefulRestart:
            {
                // RFC 4724 3: flags(4 bits) restart time(12 bits), then AFI(2) SAFI(1) flags(1) tuples.
                Require(v.Length >= 2 && (v.Length - 2) % 4 == 0, code);
                ushort ft = BinaryPrimitives.ReadUInt16BigEndian(v);
                var list = new List<(BgpFamily, byte)>();
                for (int i = 2; i < v.Length; i += 4)
                    list.Add((new BgpFamily((BgpAfi)BinaryPrimitives.ReadUInt16BigEndian(v[i..]), (BgpSafi)v[i + 2]), v[i + 3]));
                return new GracefulRestartCapability((byte)(ft >> 12), (ushort)(ft & 0x0FFF), list);
            }
            case CapabilityCode.LongLivedGracefulRestart:
            {
                // RFC 9494 3: AFI(2) SAFI(1) flags(1) long-lived stale time(3) tuples.
                Require(v.Length % 7 == 0, code);
                var list = new List<(BgpFamily, byte, uint)>();
                for (int i = 0; i < v.Length; i += 7)
                    list.Add((new BgpFamily((BgpAfi)BinaryPrimitives.ReadUInt16BigEndian(v[i..]), (BgpSafi)v[i + 2]), v[i + 3], (uint)((v[i + 4] << 16) | (v[i + 5] << 8) | v[i + 6])));
                return new LongLivedGracefulRestartCapability(list);
            }
            case CapabilityCode.Fqdn:
            {
                // draft-walton-bgp-hostname-capability 3: hostname len(1) hostname, domain len(1) domain.
                Require(v.Length >= 1 && v.Length >= 1 + v[0] + 1 && v.Length >= 2 + v[0] + v[1 + v[0]], code);
                string host = Encoding.ASCII.GetString(v.Slice(1, v[0]));
                int d = 1 + v[0];
                string domain = Encoding.ASCII.GetString(v.Slice(d + 1, v[d]));
                return new FqdnCapability(host, domain);
            }
            default:
                return new UnknownCapability(code, v.ToArray());
        }
    }

    private static void Require(bool ok, byte code)
    {
        // RFC 5492 5 leaves malformed-capability handling to each capability; we answer with
        // OPEN Message Error / Unsupported Capability carrying the offending capability code.
        if (!ok)
            throw new BgpProtocolException(new BgpNotification(BgpErrorCode.OpenMessage, (byte)BgpOpenError.UnsupportedCapability, new byte[] { code }));
    }
}

internal sealed record MultiprotocolCapability(BgpFamily Family) : Capability
{
    public override CapabilityCode Code => CapabilityCode.Multiprotocol;
    public override int ValueLength => 4;
    public override void WriteValue(Span<byte> d)
    {
        BinaryPrimitives.WriteUInt16BigEndian(d, (ushort)Family.Afi);
        d[2] = 0;
        d[3] = (byte)Family.Safi;
    }
}

internal sealed record RouteRefreshCapability : Capability
{
    public override CapabilityCode Code => CapabilityCode.RouteRefresh;
    public override int ValueLength => 0;
    public override void WriteValue(Span<byte> d) { }
}

internal sealed record EnhancedRouteRefreshCapability : Capability
{
    public override CapabilityCode Code => CapabilityCode.EnhancedRouteRefresh;
    public override int ValueLength => 0;
    public override void WriteValue(Span<byte> d) { }
}

internal sealed record ExtendedMessageCapability : Capability
{
    public override CapabilityCode Code => CapabilityCode.ExtendedMessage;
    public override int ValueLength => 0;
    public override void WriteValue(Span<byte> d) { }
}

internal sealed record FourOctetAsCapability(uint Asn) : Capability
{
    public override CapabilityCode Code => CapabilityCode.FourOctetAs;
    public override int ValueLength => 4;
    public override void WriteValue(Span<byte> d) => BinaryPrimitives.WriteUInt32BigEndian(d, Asn);
}

internal sealed record RoleCapability(BgpRole Role) : Capability
{
    public override CapabilityCode Code => CapabilityCode.Role;
    public override int ValueLength => 1;
    public override void WriteValue(Span<byte> d) => d[0] = (byte)Role;
}

internal sealed record ExtendedNextHopCapability(IReadOnlyList<(BgpFamily Nlri, BgpAfi NextHopAfi)> Entries) : Capability
{
    public override CapabilityCode Code => CapabilityCode.ExtendedNextHop;
    public override int ValueLength => 6 * Entries.Count;
    public override void WriteValue(Span<byte> d)
    {
        for (int i = 0; i < Entries.Count; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(d[(6 * i)..], (ushort)Entries[i].Nlri.Afi);
            BinaryPrimitives.WriteUInt16BigEndian(d[(6 * i + 2)..], (ushort)Entries[i].Nlri.Safi);
            BinaryPrimitives.WriteUInt16BigEndian(d[(6 * i + 4)..], (ushort)Entries[i].NextHopAfi);
        }
    }
    public bool Equals(ExtendedNextHopCapability? other) => other is not null && Entries.SequenceEqual(other.Entries);
    public override int GetHashCode() => Entries.Count;
}

internal sealed record AddPathCapability(IReadOnlyList<(BgpFamily Family, BgpAddPathMode Mode)> Entries) : Capability
{
    public override CapabilityCode Code => CapabilityCode.AddPath;
    public override int ValueLength => 4 * Entries.Count;
    public override void WriteValue(Span<byte> d)
    {
        for (int i = 0; i < Entries.Count; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(d[(4 * i)..], (ushort)Entries[i].Family.Afi);
            d[4 * i + 2] = (byte)Entries[i].Family.Safi;
            d[4 * i + 3] = (byte)Entries[i].Mode;
        }
    }
    public bool Equals(AddPathCapability? other) => other is not null && Entries.SequenceEqual(other.Entries);
    public override int GetHashCode() => Entries.Count;
}

/// <summary>Graceful restart (RFC 4724 3). Flags: 0x8 restart state, 0x4 notification (RFC 8538).</summary>
internal sealed record GracefulRestartCapability(byte Flags, ushort RestartTime, IReadOnlyList<(BgpFamily Family, byte Flags)> Families) : Capability
{
    public override CapabilityCode Code => CapabilityCode.GracefulRestart;
    public override int ValueLength => 2 + 4 * Families.Count;
    public override void WriteValue(Span<byte> d)
    {
        BinaryPrimitives.WriteUInt16BigEndian(d, (ushort)((Flags << 12) | (RestartTime & 0x0FFF)));
        for (int i = 0; i < Families.Count; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(d[(2 + 4 * i)..], (ushort)Families[i].Family.Afi);
            d[2 + 4 * i + 2] = (byte)Families[i].Family.Safi;
            d[2 + 4 * i + 3] = Families[i].Flags;
        }
    }
    public bool Equals(GracefulRestartCapability? other) => other is not null && Flags == other.Flags && RestartTime == other.RestartTime && Families.SequenceEqual(other.Families);
    public override int GetHashCode() => HashCode.Combine(Flags, RestartTime, Families.Count);
}

internal sealed record LongLivedGracefulRestartCapability(IReadOnlyList<(BgpFamily Family, byte Flags, uint StaleTime)> Families) : Capability
{
    public override CapabilityCode Code => CapabilityCode.LongLivedGracefulRestart;
    public override int ValueLength => 7 * Families.Count;
    public override void WriteValue(Span<byte> d)
    {
        for (int i = 0; i < Families.Count; i++)
        {
            var s = d[(7 * i)..];
            BinaryPrimitives.WriteUInt16BigEndian(s, (ushort)Families[i].Family.Afi);
            s[2] = (byte)Families[i].Family.Safi;
            s[3] = Families[i].Flags;
            uint t = Families[i].StaleTime;
            s[4] = (byte)(t >> 16);
            s[5] = (byte)(t >> 8);
            s[6] = (byte)t;
        }
    }
    public bool Equals(LongLivedGracefulRestartCapability? other) => other is not null && Families.SequenceEqual(other.Families);
    public override int GetHashCode() => Families.Count;
}

internal sealed record FqdnCapability(string HostName, string DomainName) : Capability
{
    public override CapabilityCode Code => CapabilityCode.Fqdn;
    public override int ValueLength => 2 + Math.Min(255, Encoding.ASCII.GetByteCount(HostName)) + Math.Min(255, Encoding.ASCII.GetByteCount(DomainName));
    public override void WriteValue(Span<byte> d)
    {
        byte[] h = Encoding.ASCII.GetBytes(HostName);
        byte[] dn = Encoding.ASCII.GetBytes(DomainName);
        int hl = Math.Min(255, h.Length), dl = Math.Min(255, dn.Length);
        d[0] = (byte)hl;
        h.AsSpan(0, hl).CopyTo(d[1..]);
        d[1 + hl] = (byte)dl;
        dn.AsSpan(0, dl).CopyTo(d[(2 + hl)..]);
    }
}

internal sealed record UnknownCapability(byte RawCode, byte[] Value) : Capability
{
    public override CapabilityCode Code => (CapabilityCode)RawCode;
    public override int ValueLength => Value.Length;
    public override void WriteValue(Span<byte> d) => Value.CopyTo(d);
    public bool Equals(UnknownCapability? other) => other is not null && RawCode == other.RawCode && Value.AsSpan().SequenceEqual(other.Value);
    public override int GetHashCode() => HashCode.Combine(RawCode, Value.Length);
}
