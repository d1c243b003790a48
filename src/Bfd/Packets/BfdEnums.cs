namespace Netcore.Bfd;

/// <summary>BFD session state (RFC 5880 4.1, "Sta").</summary>
public enum BfdState : byte
{
    /// <summary>AdminDown (0): the session is held down administratively.</summary>
    AdminDown = 0,

    /// <summary>Down (1).</summary>
    Down = 1,

    /// <summary>Init (2): the local system hears the peer but the peer has not confirmed yet.</summary>
    Init = 2,

    /// <summary>Up (3).</summary>
    Up = 3,
}

/// <summary>Diagnostic codes (RFC 5880 4.1, "Diag"): why the session last left Up.</summary>
public enum BfdDiagnostic : byte
{
    /// <summary>0 No Diagnostic.</summary>
    None = 0,

    /// <summary>1 Control Detection Time Expired.</summary>
    ControlDetectionTimeExpired = 1,

    /// <summary>2 Echo Function Failed.</summary>
    EchoFunctionFailed = 2,

    /// <summary>3 Neighbor Signaled Session Down.</summary>
    NeighborSignaledSessionDown = 3,

    /// <summary>4 Forwarding Plane Reset.</summary>
    ForwardingPlaneReset = 4,

    /// <summary>5 Path Down.</summary>
    PathDown = 5,

    /// <summary>6 Concatenated Path Down.</summary>
    ConcatenatedPathDown = 6,

    /// <summary>7 Administratively Down.</summary>
    AdministrativelyDown = 7,

    /// <summary>8 Reverse Concatenated Path Down.</summary>
    ReverseConcatenatedPathDown = 8,
}

/// <summary>Authentication types (RFC 5880 4.1, "Auth Type").</summary>
public enum BfdAuthType : byte
{
    /// <summary>0 Reserved: used here to mean "no authentication" (the A bit clear).</summary>
    None = 0,

    /// <summary>1 Simple Password (RFC 5880 4.2, 6.7.2).</summary>
    SimplePassword = 1,

    /// <summary>2 Keyed MD5 (RFC 5880 4.3, 6.7.3).</summary>
    KeyedMd5 = 2,

    /// <summary>3 Meticulous Keyed MD5 (RFC 5880 4.3, 6.7.3).</summary>
    MeticulousKeyedMd5 = 3,

    /// <summary>4 Keyed SHA1 (RFC 5880 4.4, 6.7.4).</summary>
    KeyedSha1 = 4,

    /// <summary>5 Meticulous Keyed SHA1 (RFC 5880 4.4, 6.7.4).</summary>
    MeticulousKeyedSha1 = 5,
}
