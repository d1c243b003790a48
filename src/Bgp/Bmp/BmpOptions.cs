using System.Net;

namespace Netcore.Bgp;

/// <summary>
/// BGP Monitoring Protocol export (RFC 7854): the speaker connects to each monitoring station and
/// reports its peers (Peer Up / Peer Down), the UPDATEs they send (Route Monitoring, pre-policy
/// Adj-RIB-In) and statistics. Set <see cref="BgpSpeakerOptions.Bmp"/> to enable it.
/// </summary>
public sealed record BmpOptions
{
    /// <summary>The monitoring stations to connect to (RFC 7854 3.2: the router initiates the TCP session). Required, at least one.</summary>
    public IReadOnlyList<IPEndPoint> Stations { get; init; } = [];

    /// <summary>sysName sent in the Initiation message (RFC 7854 4.4, TLV type 2). Default: the host name.</summary>
    public string? SysName { get; init; }

    /// <summary>sysDescr sent in the Initiation message (RFC 7854 4.4, TLV type 1). Default: "Netcore.Bgp" and its version.</summary>
    public string? SysDescr { get; init; }

    /// <summary>
    /// How often a Statistics Report (RFC 7854 4.8 leaves the interval to configuration) is sent for each established
    /// peer. Default 15 s: a report reads the RIB's prefix counters (about a microsecond per peer, whatever the
    /// table size), so what remains is its bytes (about 150 per peer and station). Zero or negative: never.
    /// </summary>
    public TimeSpan StatisticsInterval { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// BMP messages queued per station, at most. When a station does not keep up and its queue is full, the
    /// message is dropped (counted in <see cref="BmpStationStatus.MessagesDropped"/> and <c>bmp.messages.dropped</c>)
    /// and the station's connection is reset: after a gap its view of the Adj-RIB-In would be wrong, and a new
    /// connection starts with a full dump (RFC 7854 5). BGP sessions never wait for a station. Default 65536.
    /// </summary>
    public int QueueCapacity { get; init; } = 65536;

    /// <summary>First delay before reconnecting to a station after a failure; doubles up to <see cref="MaxReconnectDelay"/>. Default 1 s.</summary>
    public TimeSpan ReconnectDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest delay between reconnection attempts. Default 30 s.</summary>
    public TimeSpan MaxReconnectDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Timeout of one TCP connection attempt to a station. Default 5 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    internal void Validate()
    {
        if (Stations.Count == 0)
            throw new ArgumentException("BmpOptions.Stations needs at least one monitoring station");
        if (QueueCapacity < 16)
            throw new ArgumentException("BmpOptions.QueueCapacity must be at least 16");
        if (ReconnectDelay <= TimeSpan.Zero || MaxReconnectDelay < ReconnectDelay)
            throw new ArgumentException("BmpOptions.ReconnectDelay must be positive and at most MaxReconnectDelay");
    }
}

/// <summary>The state and counters of one BMP monitoring station connection.</summary>
public sealed class BmpStationStatus
{
    private long _sent;
    private long _dropped;
    private long _connects;
    private int _connected;

    internal BmpStationStatus(IPEndPoint endPoint) => EndPoint = endPoint;

    /// <summary>The station's address and port.</summary>
    public IPEndPoint EndPoint { get; }

    /// <summary>True while the TCP connection to the station is up.</summary>
    public bool IsConnected => Volatile.Read(ref _connected) != 0;

    /// <summary>BMP messages written to the station (all connections).</summary>
    public long MessagesSent => Interlocked.Read(ref _sent);

    /// <summary>BMP messages dropped because the station's queue was full (each drop resets the connection).</summary>
    public long MessagesDropped => Interlocked.Read(ref _dropped);

    /// <summary>Connections established to the station so far.</summary>
    public long Connections => Interlocked.Read(ref _connects);

    internal void Sent(int n) => Interlocked.Add(ref _sent, n);
    internal void Dropped() => Interlocked.Increment(ref _dropped);
    internal void SetConnected(bool up)
    {
        if (up) Interlocked.Increment(ref _connects);
        Volatile.Write(ref _connected, up ? 1 : 0);
    }

    /// <inheritdoc />
    public override string ToString() => $"BMP station {EndPoint} {(IsConnected ? "up" : "down")} sent {MessagesSent} dropped {MessagesDropped}";
}
