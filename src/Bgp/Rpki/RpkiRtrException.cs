namespace Netcore.Bgp;

/// <summary>RPKI-RTR Error Report codes (RFC 8210 12; RFC 6810 10 for codes 0-7).</summary>
public enum RpkiRtrErrorCode : ushort
{
    /// <summary>The received PDU could not be parsed (fatal).</summary>
    CorruptData = 0,
    /// <summary>The sender hit an internal error (fatal).</summary>
    InternalError = 1,
    /// <summary>The cache has no data yet (not fatal: try again later).</summary>
    NoDataAvailable = 2,
    /// <summary>The request was not valid (fatal).</summary>
    InvalidRequest = 3,
    /// <summary>The protocol version is not supported (fatal; drives version negotiation, RFC 8210 7).</summary>
    UnsupportedProtocolVersion = 4,
    /// <summary>The PDU type is not known or not allowed in this version (fatal).</summary>
    UnsupportedPduType = 5,
    /// <summary>A withdrawal named a record the receiver does not hold (fatal, RFC 8210 5.6).</summary>
    WithdrawalOfUnknownRecord = 6,
    /// <summary>An announcement repeated a record the receiver already holds (fatal, RFC 8210 5.6).</summary>
    DuplicateAnnouncementReceived = 7,
    /// <summary>A PDU's version differs from the negotiated one (fatal, RFC 8210 7; version 1 only).</summary>
    UnexpectedProtocolVersion = 8,
}

/// <summary>
/// An RPKI-RTR protocol error: a malformed or unexpected PDU received from the cache (then
/// <see cref="FromCache"/> is false and an Error Report was sent back when allowed), or an Error Report
/// the cache sent (<see cref="FromCache"/> true).
/// </summary>
public sealed class RpkiRtrException : Exception
{
    /// <summary>Creates the exception.</summary>
    public RpkiRtrException()
        : this(RpkiRtrErrorCode.CorruptData, "RPKI-RTR protocol error")
    {
    }

    /// <summary>Creates the exception.</summary>
    public RpkiRtrException(string message)
        : this(RpkiRtrErrorCode.CorruptData, message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public RpkiRtrException(string message, Exception innerException)
        : base(message, innerException)
    {
        Code = RpkiRtrErrorCode.CorruptData;
    }

    /// <summary>Creates the exception for an error of the given code.</summary>
    public RpkiRtrException(RpkiRtrErrorCode code, string message, bool fromCache = false)
        : base(message)
    {
        Code = code;
        FromCache = fromCache;
    }

    /// <summary>The RFC 8210 12 error code.</summary>
    public RpkiRtrErrorCode Code { get; }

    /// <summary>True when the cache reported the error (an Error Report PDU received); false when we detected it.</summary>
    public bool FromCache { get; }
}
