namespace Netcore.Bgp.Messages;

/// <summary>RFC 7606 2 error-handling approaches, ordered from least to most disruptive.</summary>
internal enum UpdateAction : byte
{
    /// <summary>The UPDATE is well formed.</summary>
    None = 0,
    /// <summary>RFC 7606 2 "attribute discard": the malformed attribute is dropped, the routes are kept.</summary>
    AttributeDiscard = 1,
    /// <summary>RFC 7606 2 "treat-as-withdraw": every NLRI in the UPDATE is handled as withdrawn.</summary>
    TreatAsWithdraw = 2,
    /// <summary>RFC 7606 2 "AFI/SAFI disable": the family is disabled for the session.</summary>
    AfiSafiDisable = 3,
    /// <summary>RFC 4271 6 / RFC 7606 2 "session reset": a NOTIFICATION is sent and the session closes.</summary>
    SessionReset = 4,
}

/// <summary>One NLRI: a prefix and its ADD-PATH path identifier (RFC 7911 3; 0 when not used).</summary>
internal readonly record struct Nlri(BgpPrefix Prefix, uint PathId = 0);

/// <summary>Per-session facts the codec needs: negotiated capabilities and the type of session.</summary>
internal sealed class CodecContext
{
    /// <summary>Both sides announced the 4-octet AS capability (RFC 6793 3).</summary>
    public bool FourOctetAs { get; set; } = true;

    /// <summary>Both sides announced extended messages (RFC 8654): 65535 octets maximum.</summary>
    public bool ExtendedMessage { get; set; }

    /// <summary>The peer is in our AS (iBGP).</summary>
    public bool IsInternal { get; set; }

    /// <summary>Receive path identifiers for IPv4 unicast (RFC 7911: we said receive, the peer said send).</summary>
    public bool AddPathReceiveIPv4 { get; set; }

    /// <summary>Receive path identifiers for IPv6 unicast.</summary>
    public bool AddPathReceiveIPv6 { get; set; }

    /// <summary>Send path identifiers for IPv4 unicast.</summary>
    public bool AddPathSendIPv4 { get; set; }

    /// <summary>Send path identifiers for IPv6 unicast.</summary>
    public bool AddPathSendIPv6 { get; set; }

    /// <summary>IPv4 NLRI may carry an IPv6 next hop (RFC 8950 negotiated).</summary>
    public bool ExtendedNextHopIPv4 { get; set; }

    /// <summary>Largest message: 4096, or 65535 with extended messages.</summary>
    public int MaxMessageSize => ExtendedMessage ? BgpMessageHeader.MaxExtendedSize : BgpMessageHeader.MaxSize;

    internal bool AddPathReceive(bool v6) => v6 ? AddPathReceiveIPv6 : AddPathReceiveIPv4;

    internal bool AddPathSend(bool v6) => v6 ? AddPathSendIPv6 : AddPathSendIPv4;

    // The attribute bytes of the last UPDATE and what they decoded to: consecutive UPDATEs of a
    // table dump very often share one attribute set, and sharing the instance lets a RIB intern it.
    internal byte[] LastAttributeBytes = new byte[256];
    internal int LastAttributeLength = -1;
    internal BgpPathAttributes? LastAttributes;

    private Attributes.DecodeCaches? _caches;

    /// <summary>Per-session caches that let repeated AS paths, community lists and next hops decode to shared instances.</summary>
    internal Attributes.DecodeCaches Caches => _caches ??= new();
}
