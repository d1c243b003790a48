using System.Text;

namespace Netcore.Bgp;

/// <summary>NOTIFICATION error codes (RFC 4271 4.5, IANA "BGP Error (Notification) Codes").</summary>
public enum BgpErrorCode : byte
{
    /// <summary>Message Header Error (RFC 4271 6.1).</summary>
    MessageHeader = 1,
    /// <summary>OPEN Message Error (RFC 4271 6.2).</summary>
    OpenMessage = 2,
    /// <summary>UPDATE Message Error (RFC 4271 6.3).</summary>
    UpdateMessage = 3,
    /// <summary>Hold Timer Expired (RFC 4271 6.5).</summary>
    HoldTimerExpired = 4,
    /// <summary>Finite State Machine Error (RFC 4271 6.6, subcodes RFC 6608).</summary>
    FiniteStateMachine = 5,
    /// <summary>Cease (RFC 4271 6.7, subcodes RFC 4486).</summary>
    Cease = 6,
    /// <summary>ROUTE-REFRESH Message Error (RFC 7313 5).</summary>
    RouteRefresh = 7,
    /// <summary>Send Hold Timer Expired (RFC 9687 3).</summary>
    SendHoldTimerExpired = 8,
}

/// <summary>Message Header Error subcodes (RFC 4271 4.5).</summary>
public enum BgpHeaderError : byte
{
    /// <summary>Connection Not Synchronized (marker not all ones).</summary>
    ConnectionNotSynchronized = 1,
    /// <summary>Bad Message Length.</summary>
    BadMessageLength = 2,
    /// <summary>Bad Message Type.</summary>
    BadMessageType = 3,
}

/// <summary>OPEN Message Error subcodes (RFC 4271 4.5, RFC 5492, RFC 9234).</summary>
public enum BgpOpenError : byte
{
    /// <summary>Unsupported Version Number.</summary>
    UnsupportedVersionNumber = 1,
    /// <summary>Bad Peer AS.</summary>
    BadPeerAs = 2,
    /// <summary>Bad BGP Identifier.</summary>
    BadBgpIdentifier = 3,
    /// <summary>Unsupported Optional Parameter.</summary>
    UnsupportedOptionalParameter = 4,
    /// <summary>Unacceptable Hold Time.</summary>
    UnacceptableHoldTime = 6,
    /// <summary>Unsupported Capability (RFC 5492 5).</summary>
    UnsupportedCapability = 7,
    /// <summary>Role Mismatch (RFC 9234 4.2).</summary>
    RoleMismatch = 11,
}

/// <summary>UPDATE Message Error subcodes (RFC 4271 4.5).</summary>
public enum BgpUpdateError : byte
{
    /// <summary>Malformed Attribute List.</summary>
    MalformedAttributeList = 1,
    /// <summary>Unrecognized Well-known Attribute.</summary>
    UnrecognizedWellKnownAttribute = 2,
    /// <summary>Missing Well-known Attribute.</summary>
    MissingWellKnownAttribute = 3,
    /// <summary>Attribute Flags Error.</summary>
    AttributeFlagsError = 4,
    /// <summary>Attribute Length Error.</summary>
    AttributeLengthError = 5,
    /// <summary>Invalid ORIGIN Attribute.</summary>
    InvalidOriginAttribute = 6,
    /// <summary>Invalid NEXT_HOP Attribute.</summary>
    InvalidNextHopAttribute = 8,
    /// <summary>Optional Attribute Error.</summary>
    OptionalAttributeError = 9,
    /// <summary>Invalid Network Field.</summary>
    InvalidNetworkField = 10,
    /// <summary>Malformed AS_PATH.</summary>
    MalformedAsPath = 11,
}

/// <summary>Finite State Machine Error subcodes (RFC 6608 3).</summary>
public enum BgpFsmError : byte
{
    /// <summary>Unspecified error.</summary>
    Unspecified = 0,
    /// <summary>Receive unexpected message in OpenSent state.</summary>
    UnexpectedMessageInOpenSent = 1,
    /// <summary>Receive unexpected message in OpenConfirm state.</summary>
    UnexpectedMessageInOpenConfirm = 2,
    /// <summary>Receive unexpected message in Established state.</summary>
    UnexpectedMessageInEstablished = 3,
}

/// <summary>Cease subcodes (RFC 4486 4, RFC 8538, RFC 9384).</summary>
public enum BgpCeaseError : byte
{
    /// <summary>Maximum Number of Prefixes Reached.</summary>
    MaximumPrefixesReached = 1,
    /// <summary>Administrative Shutdown (may carry an RFC 9003 message).</summary>
    AdministrativeShutdown = 2,
    /// <summary>Peer De-configured.</summary>
    PeerDeconfigured = 3,
    /// <summary>Administrative Reset (may carry an RFC 9003 message).</summary>
    AdministrativeReset = 4,
    /// <summary>Connection Rejected.</summary>
    ConnectionRejected = 5,
    /// <summary>Other Configuration Change.</summary>
    OtherConfigurationChange = 6,
    /// <summary>Connection Collision Resolution.</summary>
    ConnectionCollisionResolution = 7,
    /// <summary>Out of Resources.</summary>
    OutOfResources = 8,
    /// <summary>Hard Reset (RFC 8538).</summary>
    HardReset = 9,
    /// <summary>BFD Down (RFC 9384).</summary>
    BfdDown = 10,
}

/// <summary>A NOTIFICATION message (RFC 4271 4.5): sent or received when a session closes on an error or by choice.</summary>
public sealed record BgpNotification
{
    /// <summary>Creates a notification.</summary>
    public BgpNotification(BgpErrorCode code, byte subcode, ReadOnlyMemory<byte> data = default)
    {
        Code = code;
        Subcode = subcode;
        Data = data;
    }

    /// <summary>The error code.</summary>
    public BgpErrorCode Code { get; }

    /// <summary>The subcode (meaning depends on <see cref="Code"/>).</summary>
    public byte Subcode { get; }

    /// <summary>The data field.</summary>
    public ReadOnlyMemory<byte> Data { get; }

    /// <summary>Largest shutdown communication in octets (RFC 9003 2).</summary>
    public const int MaxShutdownMessageBytes = 255;

    /// <summary>
    /// A Cease with Administrative Shutdown or Reset carrying a shutdown communication (RFC 9003 2:
    /// one length octet then UTF-8, at most 255 octets; longer text is cut at a character boundary).
    /// </summary>
    public static BgpNotification Shutdown(string? message, bool reset = false)
    {
        byte sub = (byte)(reset ? BgpCeaseError.AdministrativeReset : BgpCeaseError.AdministrativeShutdown);
        if (string.IsNullOrEmpty(message))
            return new BgpNotification(BgpErrorCode.Cease, sub);
        byte[] utf8 = Encoding.UTF8.GetBytes(message);
        int n = Math.Min(utf8.Length, MaxShutdownMessageBytes);
        while (n > 0 && n < utf8.Length && (utf8[n] & 0xC0) == 0x80) n--; // do not split a UTF-8 sequence
        byte[] data = new byte[n + 1];
        data[0] = (byte)n;
        utf8.AsSpan(0, n).CopyTo(data.AsSpan(1));
        return new BgpNotification(BgpErrorCode.Cease, sub, data);
    }

    /// <summary>
    /// The RFC 9003 shutdown communication when this is a Cease/Administrative Shutdown or Reset
    /// whose data is a well-formed length-prefixed UTF-8 string; otherwise null.
    /// </summary>
    public string? ShutdownMessage
    {
        get
        {
            if (Code != BgpErrorCode.Cease || Subcode is not ((byte)BgpCeaseError.AdministrativeShutdown or (byte)BgpCeaseError.AdministrativeReset))
                return null;
            var d = Data.Span;
            // RFC 9003 2: length octet, then that many octets of UTF-8; a length beyond the data is malformed.
            if (d.Length == 0 || d[0] == 0 || d[0] + 1 > d.Length)
                return null;
            try
            {
                return new UTF8Encoding(false, true).GetString(d.Slice(1, d[0]));
            }
            catch (DecoderFallbackException)
            {
                return null; // RFC 9003 2: invalid UTF-8 is not shown
            }
        }
    }

    /// <summary>Human-readable name of the code and subcode.</summary>
    public string Describe()
    {
        string sub = Code switch
        {
            BgpErrorCode.MessageHeader => ((BgpHeaderError)Subcode).ToString(),
            BgpErrorCode.OpenMessage => ((BgpOpenError)Subcode).ToString(),
            BgpErrorCode.UpdateMessage => ((BgpUpdateError)Subcode).ToString(),
            BgpErrorCode.FiniteStateMachine => ((BgpFsmError)Subcode).ToString(),
            BgpErrorCode.Cease => ((BgpCeaseError)Subcode).ToString(),
            BgpErrorCode.RouteRefresh => Subcode == 1 ? "InvalidMessageLength" : Subcode.ToString(System.Globalization.CultureInfo.InvariantCulture),
            _ => Subcode.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        string text = $"{Code}/{sub}";
        return ShutdownMessage is { } m ? $"{text} \"{m}\"" : text;
    }

    /// <inheritdoc />
    public override string ToString() => Describe();
}

/// <summary>A protocol error that ends a session with the NOTIFICATION it carries.</summary>
public sealed class BgpProtocolException : Exception
{
    /// <summary>Creates the exception.</summary>
    public BgpProtocolException(BgpNotification notification)
        : base((notification ?? throw new ArgumentNullException(nameof(notification))).Describe()) => Notification = notification;

    /// <summary>Creates the exception with a message.</summary>
    public BgpProtocolException(BgpNotification notification, string message)
        : base(message) => Notification = notification;

    /// <summary>Creates the exception.</summary>
    public BgpProtocolException() : base("BGP protocol error") => Notification = new BgpNotification(BgpErrorCode.FiniteStateMachine, 0);

    /// <summary>Creates the exception.</summary>
    public BgpProtocolException(string message) : base(message) => Notification = new BgpNotification(BgpErrorCode.FiniteStateMachine, 0);

    /// <summary>Creates the exception.</summary>
    public BgpProtocolException(string message, Exception innerException) : base(message, innerException) => Notification = new BgpNotification(BgpErrorCode.FiniteStateMachine, 0);

    /// <summary>The NOTIFICATION to send (or that was received).</summary>
    public BgpNotification Notification { get; }
}
