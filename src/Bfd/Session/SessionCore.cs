using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Netcore.Bfd.Packets;
using Netcore.Interop;

namespace Netcore.Bfd.Session;

/// <summary>Identity of a session for demultiplexing packets with Your Discriminator zero (RFC 5880 6.8.6).</summary>
internal readonly record struct SessionKey(UInt128 Peer, UInt128 Local, int IfIndex, bool Multihop)
{
    public static UInt128 ToKey(IPAddress? a)
    {
        if (a is null)
            return UInt128.Zero;
        if (a.AddressFamily == AddressFamily.InterNetwork)
            a = a.MapToIPv6();
        Span<byte> b = stackalloc byte[16];
        a.TryWriteBytes(b, out _);
        return BinaryPrimitives.ReadUInt128BigEndian(b);
    }
}

/// <summary>
/// A session shared by every lease on it: the state machine, its transmit socket and buffer,
/// counters and subscribers. Mutated only on the timing thread, except the subscriber list.
/// </summary>
internal sealed class SessionCore
{
    private readonly List<Channel<BfdStateChange>> _subscribers = [];
    private long _packetsSent, _packetsReceived, _packetsDropped, _authFailures, _stateChanges, _flaps, _sendErrors;

    public SessionCore(BfdSessionOptions options, SessionKey key, uint discriminator, SafeFd txSocket, ushort sourcePort, int ifIndex)
    {
        Options = options;
        Key = key;
        TxSocket = txSocket;
        SourcePort = sourcePort;
        IfIndex = ifIndex;
        Authenticator? auth = options.Authentication is { Type: not BfdAuthType.None } a
            ? new Authenticator(a, (uint)Random.Shared.NextInt64(0, uint.MaxValue)) : null;
        Fsm = new BfdStateMachine(discriminator,
            BfdSessionOptions.ToMicroseconds(options.DesiredMinTxInterval, nameof(options.DesiredMinTxInterval)),
            (uint)(options.RequiredMinRxInterval.Ticks / 10),
            options.DetectMultiplier, auth, options.ControlPlaneIndependent);
    }

    public BfdSessionOptions Options { get; }
    public SessionKey Key { get; }
    public BfdStateMachine Fsm { get; }
    public SafeFd TxSocket { get; }
    public ushort SourcePort { get; }
    public int IfIndex { get; }
    public IPAddress Peer => Options.Peer;

    /// <summary>Pinned transmit buffer: a Control packet is at most 24 + 28 bytes.</summary>
    public byte[] TxBuffer { get; } = GC.AllocateArray<byte>(64, pinned: true);

    /// <summary>Number of leases (guarded by the host's lock).</summary>
    public int RefCount { get; set; }

    /// <summary>Heap bookkeeping of the timing thread.</summary>
    public long ScheduledAt { get; set; } = long.MinValue;

    /// <summary>AdminDown packets still to send before removal; -1 while open.</summary>
    public int ClosingPacketsLeft { get; set; } = -1;

    public bool Removed { get; set; }

    public TaskCompletionSource? Closed { get; set; }

    public void CountSent() => Interlocked.Increment(ref _packetsSent);
    public void CountReceived() => Interlocked.Increment(ref _packetsReceived);
    public void CountDropped() => Interlocked.Increment(ref _packetsDropped);
    public void CountAuthFailure() => Interlocked.Increment(ref _authFailures);
    public void CountSendError() => Interlocked.Increment(ref _sendErrors);

    public BfdSessionCounters Counters => new(
        Volatile.Read(ref _packetsSent), Volatile.Read(ref _packetsReceived), Volatile.Read(ref _packetsDropped),
        Volatile.Read(ref _authFailures), Volatile.Read(ref _stateChanges), Volatile.Read(ref _flaps), Volatile.Read(ref _sendErrors));

    public Channel<BfdStateChange> Subscribe()
    {
        var ch = Channel.CreateUnbounded<BfdStateChange>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        lock (_subscribers)
            _subscribers.Add(ch);
        return ch;
    }

    public void Unsubscribe(Channel<BfdStateChange> channel)
    {
        lock (_subscribers)
            _subscribers.Remove(channel);
    }

    public void Publish(in BfdStateChange change)
    {
        Interlocked.Increment(ref _stateChanges);
        if (change.OldState == BfdState.Up)
            Interlocked.Increment(ref _flaps);
        lock (_subscribers)
            foreach (Channel<BfdStateChange> c in _subscribers)
                c.Writer.TryWrite(change);
    }

    public void CompleteSubscribers()
    {
        lock (_subscribers)
        {
            foreach (Channel<BfdStateChange> c in _subscribers)
                c.Writer.TryComplete();
            _subscribers.Clear();
        }
    }
}
