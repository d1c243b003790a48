namespace Netcore.Bgp;

/// <summary>Counters of one peer. Read at any time; values are updated atomically.</summary>
public sealed class BgpPeerStatistics
{
    private readonly long[] _in = new long[6];
    private readonly long[] _out = new long[6];
    private long _prefixesIn, _withdrawnIn, _established, _treatAsWithdraw, _discarded;
    private long _establishedSinceTicks;

    /// <summary>OPEN messages received.</summary>
    public long OpensReceived => Volatile.Read(ref _in[1]);
    /// <summary>UPDATE messages received.</summary>
    public long UpdatesReceived => Volatile.Read(ref _in[2]);
    /// <summary>NOTIFICATION messages received.</summary>
    public long NotificationsReceived => Volatile.Read(ref _in[3]);
    /// <summary>KEEPALIVE messages received.</summary>
    public long KeepalivesReceived => Volatile.Read(ref _in[4]);
    /// <summary>ROUTE-REFRESH messages received.</summary>
    public long RouteRefreshesReceived => Volatile.Read(ref _in[5]);
    /// <summary>OPEN messages sent.</summary>
    public long OpensSent => Volatile.Read(ref _out[1]);
    /// <summary>UPDATE messages sent.</summary>
    public long UpdatesSent => Volatile.Read(ref _out[2]);
    /// <summary>NOTIFICATION messages sent.</summary>
    public long NotificationsSent => Volatile.Read(ref _out[3]);
    /// <summary>KEEPALIVE messages sent.</summary>
    public long KeepalivesSent => Volatile.Read(ref _out[4]);
    /// <summary>ROUTE-REFRESH messages sent.</summary>
    public long RouteRefreshesSent => Volatile.Read(ref _out[5]);
    /// <summary>Prefixes announced by the peer (counted per UPDATE, not a table size).</summary>
    public long PrefixesReceived => Volatile.Read(ref _prefixesIn);
    /// <summary>Prefixes withdrawn by the peer.</summary>
    public long WithdrawalsReceived => Volatile.Read(ref _withdrawnIn);
    /// <summary>Times the session reached Established.</summary>
    public long EstablishedTransitions => Volatile.Read(ref _established);
    /// <summary>UPDATEs handled with RFC 7606 treat-as-withdraw.</summary>
    public long TreatAsWithdrawCount => Volatile.Read(ref _treatAsWithdraw);
    /// <summary>Attributes dropped with RFC 7606 attribute discard.</summary>
    public long AttributesDiscarded => Volatile.Read(ref _discarded);
    /// <summary>The last NOTIFICATION sent or received, or null.</summary>
    public BgpNotification? LastError { get; internal set; }
    /// <summary>True when <see cref="LastError"/> was sent by us, false when received.</summary>
    public bool LastErrorSent { get; internal set; }
    /// <summary>Why the session last went down, in words.</summary>
    public string? LastDownReason { get; internal set; }

    /// <summary>When the session reached Established, or null while it is not.</summary>
    public DateTimeOffset? EstablishedSince
    {
        get
        {
            long t = Volatile.Read(ref _establishedSinceTicks);
            return t == 0 ? null : new DateTimeOffset(t, TimeSpan.Zero);
        }
    }

    /// <summary>Time in Established so far (zero when not established).</summary>
    public TimeSpan Uptime => EstablishedSince is { } s ? DateTimeOffset.UtcNow - s : TimeSpan.Zero;

    internal void Received(int type) { if ((uint)type < 6) Interlocked.Increment(ref _in[type]); }
    internal void Sent(int type) { if ((uint)type < 6) Interlocked.Increment(ref _out[type]); }
    internal void Prefixes(int announced, int withdrawn)
    {
        Interlocked.Add(ref _prefixesIn, announced);
        Interlocked.Add(ref _withdrawnIn, withdrawn);
    }
    internal void TreatAsWithdraw() => Interlocked.Increment(ref _treatAsWithdraw);
    internal void Discarded(int n) => Interlocked.Add(ref _discarded, n);
    internal void Up()
    {
        Interlocked.Increment(ref _established);
        Volatile.Write(ref _establishedSinceTicks, DateTimeOffset.UtcNow.UtcTicks);
    }
    internal void Down() => Volatile.Write(ref _establishedSinceTicks, 0);
}
