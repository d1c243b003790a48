using System.Globalization;

namespace Netcore.Bgp;

/// <summary>A standard community (RFC 1997): a 32-bit value usually written "ASN:value".</summary>
/// <param name="Value">The 32-bit community value.</param>
public readonly record struct BgpCommunity(uint Value)
{
    /// <summary>NO_EXPORT (RFC 1997): do not advertise outside the confederation.</summary>
    public static BgpCommunity NoExport => new(0xFFFFFF01);

    /// <summary>NO_ADVERTISE (RFC 1997): do not advertise to any peer.</summary>
    public static BgpCommunity NoAdvertise => new(0xFFFFFF02);

    /// <summary>NO_EXPORT_SUBCONFED (RFC 1997).</summary>
    public static BgpCommunity NoExportSubconfed => new(0xFFFFFF03);

    /// <summary>NOPEER (RFC 3765).</summary>
    public static BgpCommunity NoPeer => new(0xFFFFFF04);

    /// <summary>GRACEFUL_SHUTDOWN (RFC 8326).</summary>
    public static BgpCommunity GracefulShutdown => new(0xFFFF0000);

    /// <summary>ACCEPT_OWN (RFC 7611).</summary>
    public static BgpCommunity AcceptOwn => new(0xFFFF0001);

    /// <summary>LLGR_STALE (RFC 9494).</summary>
    public static BgpCommunity LlgrStale => new(0xFFFF0006);

    /// <summary>NO_LLGR (RFC 9494).</summary>
    public static BgpCommunity NoLlgr => new(0xFFFF0007);

    /// <summary>BLACKHOLE (RFC 7999).</summary>
    public static BgpCommunity Blackhole => new(0xFFFF029A);

    /// <summary>Creates "asn:value".</summary>
    public BgpCommunity(ushort asn, ushort value) : this(((uint)asn << 16) | value) { }

    /// <summary>The high 16 bits (conventionally an AS number).</summary>
    public ushort Asn => (ushort)(Value >> 16);

    /// <summary>The low 16 bits.</summary>
    public ushort LocalValue => (ushort)Value;

    /// <summary>The well-known name (e.g. "NO_EXPORT"), or null.</summary>
    public string? WellKnownName => Value switch
    {
        0xFFFFFF01 => "NO_EXPORT",
        0xFFFFFF02 => "NO_ADVERTISE",
        0xFFFFFF03 => "NO_EXPORT_SUBCONFED",
        0xFFFFFF04 => "NOPEER",
        0xFFFF0000 => "GRACEFUL_SHUTDOWN",
        0xFFFF0001 => "ACCEPT_OWN",
        0xFFFF0006 => "LLGR_STALE",
        0xFFFF0007 => "NO_LLGR",
        0xFFFF029A => "BLACKHOLE",
        _ => null,
    };

    /// <summary>Parses "65000:100" or a well-known name.</summary>
    public static BgpCommunity Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        foreach (var wk in new[] { NoExport, NoAdvertise, NoExportSubconfed, NoPeer, GracefulShutdown, AcceptOwn, LlgrStale, NoLlgr, Blackhole })
            if (string.Equals(wk.WellKnownName, text, StringComparison.OrdinalIgnoreCase))
                return wk;
        string[] p = text.Split(':');
        if (p.Length != 2)
            throw new FormatException($"'{text}' is not a community (asn:value)");
        return new BgpCommunity(ushort.Parse(p[0], CultureInfo.InvariantCulture), ushort.Parse(p[1], CultureInfo.InvariantCulture));
    }

    /// <inheritdoc />
    public override string ToString() => WellKnownName ?? $"{Asn}:{LocalValue}";
}

/// <summary>A large community (RFC 8092): three 32-bit values "global:local1:local2".</summary>
/// <param name="GlobalAdministrator">Normally the AS number of the operator that defines it.</param>
/// <param name="LocalData1">First local value.</param>
/// <param name="LocalData2">Second local value.</param>
public readonly record struct BgpLargeCommunity(uint GlobalAdministrator, uint LocalData1, uint LocalData2)
{
    /// <summary>Parses "4200000000:1:2".</summary>
    public static BgpLargeCommunity Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] p = text.Split(':');
        if (p.Length != 3)
            throw new FormatException($"'{text}' is not a large community (a:b:c)");
        return new BgpLargeCommunity(uint.Parse(p[0], CultureInfo.InvariantCulture), uint.Parse(p[1], CultureInfo.InvariantCulture), uint.Parse(p[2], CultureInfo.InvariantCulture));
    }

    /// <inheritdoc />
    public override string ToString() => $"{GlobalAdministrator}:{LocalData1}:{LocalData2}";
}

/// <summary>An extended community (RFC 4360): 8 octets, a type, a sub-type and a value.</summary>
/// <param name="Value">The 64-bit value in network order (type in the top octet).</param>
public readonly record struct BgpExtendedCommunity(ulong Value)
{
    /// <summary>The type octet (high bit: IANA authority; bit 6: non-transitive).</summary>
    public byte Type => (byte)(Value >> 56);

    /// <summary>The sub-type octet.</summary>
    public byte SubType => (byte)(Value >> 48);

    /// <summary>True when the community is transitive across ASes (RFC 4360 2: bit 6 of the type is 0).</summary>
    public bool IsTransitive => (Type & 0x40) == 0;

    /// <summary>A route target with a 2-octet AS (type 0x00, sub-type 0x02; RFC 4360 5).</summary>
    public static BgpExtendedCommunity RouteTarget(ushort asn, uint value) => new(0x0002_0000_0000_0000UL | ((ulong)asn << 32) | value);

    /// <summary>A route origin with a 2-octet AS (type 0x00, sub-type 0x03; RFC 4360 5).</summary>
    public static BgpExtendedCommunity RouteOrigin(ushort asn, uint value) => new(0x0003_0000_0000_0000UL | ((ulong)asn << 32) | value);

    /// <summary>A route target with a 4-octet AS (type 0x02, sub-type 0x02; RFC 5668).</summary>
    public static BgpExtendedCommunity RouteTarget4(uint asn, ushort value) => new(0x0202_0000_0000_0000UL | ((ulong)asn << 16) | value);

    /// <inheritdoc />
    public override string ToString() => Type switch
    {
        0x00 when SubType == 0x02 => $"rt {(ushort)(Value >> 32)}:{(uint)Value}",
        0x00 when SubType == 0x03 => $"ro {(ushort)(Value >> 32)}:{(uint)Value}",
        0x02 when SubType == 0x02 => $"rt {(uint)(Value >> 16)}:{(ushort)Value}",
        0x02 when SubType == 0x03 => $"ro {(uint)(Value >> 16)}:{(ushort)Value}",
        _ => $"0x{Value:x16}",
    };
}
