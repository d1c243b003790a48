using System.Net;

namespace Netcore.Bfd;

/// <summary>Options of a <see cref="BfdHost"/>.</summary>
public sealed record BfdHostOptions
{
    /// <summary>
    /// Network namespace (iproute2 name such as "blue" or a path such as /proc/123/ns/net) in which
    /// the host opens its sockets. Null (the default) uses the caller's namespace.
    /// </summary>
    public string? NetworkNamespace { get; init; }

    /// <summary>Listen for single-hop IPv6 and multihop IPv6 packets too. Default true.</summary>
    public bool EnableIPv6 { get; init; } = true;

    /// <summary>Listen on UDP 4784 for multihop sessions (RFC 5883). Default true.</summary>
    public bool EnableMultihop { get; init; } = true;

    /// <summary>
    /// Run the timing thread under SCHED_FIFO with this real-time priority (1-99) so that transmit
    /// and detection timers keep their schedule on a loaded machine. Needs CAP_SYS_NICE; without it
    /// the thread keeps normal scheduling and a warning is logged. Null (the default) leaves the
    /// thread under normal scheduling.
    /// </summary>
    public int? RealtimePriority { get; init; }

    /// <summary>Receive buffer of each listening socket in bytes (SO_RCVBUF). Default 4 MiB.</summary>
    public int ReceiveBufferSize { get; init; } = 4 << 20;
}

/// <summary>
/// Parameters of one BFD session. Two sessions are the same session (and shared by reference
/// count) when peer, local address, interface and hop mode are equal.
/// </summary>
public sealed record BfdSessionOptions
{
    /// <summary>The peer's address (IPv4 or IPv6; link-local IPv6 needs <see cref="Interface"/>).</summary>
    public required IPAddress Peer { get; init; }

    /// <summary>Local source address. Null lets the kernel choose (single-hop only; multihop should set it).</summary>
    public IPAddress? LocalAddress { get; init; }

    /// <summary>Interface for a single-hop session (RFC 5881): packets are sent bound to it and only accepted from it.</summary>
    public string? Interface { get; init; }

    /// <summary>Multihop session (RFC 5883, UDP 4784) instead of single hop (RFC 5881, UDP 3784). Default false.</summary>
    public bool Multihop { get; init; }

    /// <summary>Multihop only: smallest TTL / hop limit accepted on received packets. Default 254 (one router).</summary>
    public byte MinimumTtl { get; init; } = 254;

    /// <summary>bfd.DesiredMinTxInterval once Up (RFC 5880 6.8.1). Default 300 ms.</summary>
    public TimeSpan DesiredMinTxInterval { get; init; } = TimeSpan.FromMilliseconds(300);

    /// <summary>bfd.RequiredMinRxInterval (RFC 5880 6.8.1). Default 300 ms.</summary>
    public TimeSpan RequiredMinRxInterval { get; init; } = TimeSpan.FromMilliseconds(300);

    /// <summary>bfd.DetectMult (RFC 5880 6.8.1). Default 3.</summary>
    public byte DetectMultiplier { get; init; } = 3;

    /// <summary>Authentication (RFC 5880 6.7). Null (the default) for none.</summary>
    public BfdAuthentication? Authentication { get; init; }

    /// <summary>Set the C bit: this BFD implementation does not share fate with the control plane (RFC 5880 4.1). Default false.</summary>
    public bool ControlPlaneIndependent { get; init; }

    internal static uint ToMicroseconds(TimeSpan t, string name)
    {
        long us = t.Ticks / 10;
        if (us <= 0 || us > uint.MaxValue)
            throw new ArgumentOutOfRangeException(name, t, "A BFD interval must be between 1 µs and about 71 minutes.");
        return (uint)us;
    }

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Peer);
        ToMicroseconds(DesiredMinTxInterval, nameof(DesiredMinTxInterval));
        if (RequiredMinRxInterval < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(RequiredMinRxInterval));
        if (DetectMultiplier == 0)
            throw new ArgumentOutOfRangeException(nameof(DetectMultiplier), "RFC 5880 6.8.1: bfd.DetectMult must be nonzero.");
        if (LocalAddress is not null && LocalAddress.AddressFamily != Peer.AddressFamily)
            throw new ArgumentException("The local address and the peer must be of the same address family.", nameof(LocalAddress));
        if (Multihop && Interface is not null)
            throw new ArgumentException("A multihop session (RFC 5883) is not bound to an interface.", nameof(Interface));
        Authentication?.Validate();
    }
}

/// <summary>A state change of a session, with the timing the detection depended on.</summary>
/// <param name="Peer">The peer address.</param>
/// <param name="OldState">State before the change.</param>
/// <param name="NewState">State after the change.</param>
/// <param name="Diagnostic">The local diagnostic (bfd.LocalDiag) after the change.</param>
/// <param name="RemoteDiagnostic">The diagnostic in the last packet from the peer.</param>
/// <param name="Timestamp">When the change was made, in <see cref="System.Diagnostics.Stopwatch"/> ticks (CLOCK_MONOTONIC on Linux).</param>
/// <param name="LastPacketTimestamp">Kernel receive time of the last valid packet, in the same clock, or 0 when none was received.</param>
/// <param name="DetectionTime">The Detection Time in force (RFC 5880 6.8.4).</param>
public readonly record struct BfdStateChange(
    IPAddress Peer,
    BfdState OldState,
    BfdState NewState,
    BfdDiagnostic Diagnostic,
    BfdDiagnostic RemoteDiagnostic,
    long Timestamp,
    long LastPacketTimestamp,
    TimeSpan DetectionTime);

/// <summary>Counters of a session since it was created.</summary>
/// <param name="PacketsSent">Control packets sent.</param>
/// <param name="PacketsReceived">Valid Control packets accepted.</param>
/// <param name="PacketsDropped">Packets for this session discarded (RFC 5880 6.8.6, RFC 5881 5 TTL check, authentication).</param>
/// <param name="AuthenticationFailures">Packets that failed authentication (RFC 5880 6.7).</param>
/// <param name="StateChanges">State changes.</param>
/// <param name="Flaps">Transitions from Up to any other state.</param>
/// <param name="SendErrors">Failed sends.</param>
public readonly record struct BfdSessionCounters(
    long PacketsSent,
    long PacketsReceived,
    long PacketsDropped,
    long AuthenticationFailures,
    long StateChanges,
    long Flaps,
    long SendErrors);
