using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Netcore.Bfd.Packets;
using Netcore.Bfd.Session;
using Netcore.Interop;
using static Netcore.Interop.LinuxConstants;

namespace Netcore.Bfd.Io;

/// <summary>
/// The single timing thread: one epoll set holding a timerfd (armed at the earliest session
/// deadline, CLOCK_MONOTONIC, absolute), the listening sockets and an eventfd for commands.
/// Every session's state machine runs here, so no locks are taken per packet; received
/// datagrams, control messages and transmit buffers live in memory allocated once.
/// </summary>
internal sealed unsafe partial class BfdEngine : IDisposable
{
    private const int MaxEvents = 32;
    private const int RxBufferSize = 2048;
    private const int ControlSize = 256;
    private const ulong TagTimer = 1, TagCommand = 2, TagListener = 16;

    private readonly ILogger _logger;
    private readonly SafeFd _epoll;
    private readonly SafeFd _timer;
    private readonly SafeFd _event;
    private readonly List<Listener> _listeners = [];
    private readonly ConcurrentQueue<Action> _commands = new();
    private readonly PriorityQueue<SessionCore, long> _heap = new();
    private readonly Dictionary<uint, SessionCore> _byDiscriminator = [];
    private readonly Dictionary<SessionKey, SessionCore> _byKey = [];
    private readonly Thread _thread;
    private readonly byte* _rx;
    private readonly byte* _control;
    private readonly sockaddr_in6* _name;
    private readonly epoll_event* _events;
    private readonly int? _realtimePriority;
    private long _armedAt = long.MaxValue;
    private volatile bool _stop;
    private bool _drainedThisRound;

    private sealed record Listener(SafeFd Fd, bool V6, bool Multihop);

    public BfdEngine(ILogger logger, int? realtimePriority = null)
    {
        _logger = logger;
        _realtimePriority = realtimePriority;
        _epoll = SafeFd.FromResult(Libc.epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
        _timer = SafeFd.FromResult(Libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC), "timerfd_create(CLOCK_MONOTONIC)");
        _event = SafeFd.FromResult(Libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd");
        Add(_timer.Fd, TagTimer);
        Add(_event.Fd, TagCommand);
        _rx = (byte*)NativeMemory.AlignedAlloc(RxBufferSize, 64);
        _control = (byte*)NativeMemory.AlignedAlloc(ControlSize, 64);
        _name = (sockaddr_in6*)NativeMemory.AllocZeroed((nuint)sizeof(sockaddr_in6));
        _events = (epoll_event*)NativeMemory.AllocZeroed((nuint)(sizeof(epoll_event) * MaxEvents));
        _thread = new Thread(Run, maxStackSize: 256 * 1024) { IsBackground = true, Name = "netcore-bfd-timing", Priority = ThreadPriority.Highest };
    }

    /// <summary>Sessions currently registered (timing thread only).</summary>
    public int SessionCount => _byDiscriminator.Count;

    public void Start() => _thread.Start();

    /// <summary>Adds a listening socket; called before <see cref="Start"/>.</summary>
    public void AddListener(SafeFd fd, bool v6, bool multihop)
    {
        _listeners.Add(new Listener(fd, v6, multihop));
        Add(fd.Fd, TagListener + (ulong)(_listeners.Count - 1));
    }

    /// <summary>Runs <paramref name="action"/> on the timing thread.</summary>
    public void Post(Action action)
    {
        _commands.Enqueue(action);
        ulong one = 1;
        Libc.write(_event.Fd, &one, sizeof(ulong));
    }

    public Task InvokeAsync(Action action)
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(() =>
        {
            try
            {
                action();
                tcs.SetResult();
            }
            catch (Exception e)
            {
                tcs.SetException(e);
            }
        });
        return tcs.Task;
    }

    public static long Now() => Stopwatch.GetTimestamp();

    /// <summary>Bytes allocated so far by the timing thread (GC.GetAllocatedBytesForCurrentThread there).</summary>
    public Task<long> AllocatedBytesOnTimingThreadAsync()
    {
        var tcs = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(() => tcs.SetResult(GC.GetAllocatedBytesForCurrentThread()));
        return tcs.Task;
    }

    /// <summary>Closes every session (AdminDown on the wire) and waits up to <paramref name="timeout"/>.</summary>
    public Task CloseAllAsync(IEnumerable<SessionCore> sessions, TimeSpan timeout)
    {
        var tasks = new List<Task>();
        foreach (SessionCore s in sessions)
        {
            s.Closed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            tasks.Add(s.Closed.Task);
        }
        Post(() =>
        {
            foreach (SessionCore s in _byDiscriminator.Values.ToArray())
                Close(s);
        });
        return Task.WhenAny(Task.WhenAll(tasks), Task.Delay(timeout));
    }


    // --- commands (timing thread) ------------------------------------------------------

    public void Register(SessionCore s)
    {
        s.Fsm.StateChanged = (o, n, d, t) => OnStateChanged(s, o, n, d, t);
        _byDiscriminator[s.Fsm.LocalDiscr] = s;
        _byKey[s.Key] = s;
        s.Fsm.Start(Now());
        Reschedule(s);
        Log.SessionCreated(_logger, s.Peer, s.Fsm.LocalDiscr, s.SourcePort);
    }

    public bool DiscriminatorInUse(uint d) => _byDiscriminator.ContainsKey(d);

    /// <summary>RFC 5880 6.8.16: the last lease is gone: send AdminDown (diag 7) a few times, then remove.</summary>
    public void Close(SessionCore s)
    {
        if (s.Removed || s.ClosingPacketsLeft >= 0)
            return;
        long now = Now();
        s.Fsm.AdminDown(now);
        s.ClosingPacketsLeft = 3;
        Transmit(s, now, periodic: false);
        s.ClosingPacketsLeft--;
        s.Fsm.OverrideNextTx(now + ClosingSpacing);
        Reschedule(s);
    }

    private const long ClosingSpacing = 20_000_000; // 20 ms between the AdminDown packets sent on close

    private void Remove(SessionCore s)
    {
        s.Removed = true;
        _byDiscriminator.Remove(s.Fsm.LocalDiscr);
        if (_byKey.TryGetValue(s.Key, out SessionCore? cur) && ReferenceEquals(cur, s))
            _byKey.Remove(s.Key);
        s.TxSocket.Dispose();
        s.CompleteSubscribers();
        s.Closed?.TrySetResult();
        Log.SessionRemoved(_logger, s.Peer, s.Fsm.LocalDiscr);
    }

    public void Reschedule(SessionCore s)
    {
        if (s.Removed)
            return;
        long t = s.Fsm.NextEvent;
        if (t == s.ScheduledAt)
            return;
        s.ScheduledAt = t;
        if (t != BfdStateMachine.Never)
            _heap.Enqueue(s, t);
    }

    private void OnStateChanged(SessionCore s, BfdState old, BfdState next, BfdDiagnostic diag, long now)
    {
        BfdStateMachine f = s.Fsm;
        long lastRx = f.LastRx == BfdStateMachine.Never ? 0 : f.LastRx;
        var change = new BfdStateChange(s.Peer, old, next, diag, f.RemoteDiag, now, lastRx,
            TimeSpan.FromTicks((long)f.DetectionTimeUs * 10));
        s.Publish(change);
        BfdMetrics.StateChanges.Add(1);
        Log.StateChanged(_logger, s.Peer, f.LocalDiscr, old, next, diag);
    }

    // --- the loop ----------------------------------------------------------------------

    [LibraryImport("libc.so.6", SetLastError = true)]
    private static partial int sched_setscheduler(int pid, int policy, int* param);

    private const int SCHED_FIFO = 1;

    private void Run()
    {
        if (_realtimePriority is int prio)
        {
            // sched(7): SCHED_FIFO for this thread only (pid 0 = the calling thread).
            if (sched_setscheduler(0, SCHED_FIFO, &prio) != 0)
                Log.RealtimeUnavailable(_logger, prio, ErrnoExtensions.Last().Name());
        }
        try
        {
            while (!_stop)
            {
                ArmTimer();
                int n = Libc.epoll_wait(_epoll.Fd, _events, MaxEvents, -1);
                if (n < 0)
                {
                    if (ErrnoExtensions.Last() == Errno.EINTR)
                        continue;
                    SysCallException.ThrowLast("epoll_wait");
                }
                _drainedThisRound = false;
                for (int i = 0; i < n; i++)
                {
                    ulong tag = _events[i].data;
                    if (tag == TagTimer)
                    {
                        ulong expirations;
                        Libc.read(_timer.Fd, &expirations, sizeof(ulong));
                        _armedAt = long.MaxValue;
                    }
                    else if (tag == TagCommand)
                    {
                        ulong count;
                        Libc.read(_event.Fd, &count, sizeof(ulong));
                        while (_commands.TryDequeue(out Action? a))
                            a();
                    }
                    else
                    {
                        Drain(_listeners[(int)(tag - TagListener)]);
                    }
                }
                RunTimers();
            }
        }
        catch (Exception e)
        {
            Log.EngineFailed(_logger, e);
            throw;
        }
    }

    private void RunTimers()
    {
        while (_heap.TryPeek(out SessionCore? s, out long t))
        {
            long now = Now();
            if (t > now)
                break;
            _heap.Dequeue();
            if (s.Removed || t != s.ScheduledAt)
                continue; // stale entry
            s.ScheduledAt = long.MinValue;
            BfdStateMachine f = s.Fsm;
            // Before a session is declared down, the packets already queued in the kernel are
            // read: a packet that arrived before the deadline (kernel timestamp) is not a loss.
            if (f.DetectExpired(now) && !_drainedThisRound)
            {
                _drainedThisRound = true;
                foreach (Listener l in _listeners)
                    Drain(l);
                now = Now();
            }
            if (f.OnTimer(now))
            {
                if (s.ClosingPacketsLeft == 0)
                {
                    Remove(s);
                    continue;
                }
                Transmit(s, now, periodic: true);
                if (s.ClosingPacketsLeft > 0)
                {
                    s.ClosingPacketsLeft--;
                    f.OverrideNextTx(now + ClosingSpacing);
                }
            }
            Reschedule(s);
        }
    }

    private void ArmTimer()
    {
        long next = long.MaxValue;
        while (_heap.TryPeek(out SessionCore? s, out long t))
        {
            if (!s.Removed && t == s.ScheduledAt)
            {
                next = t;
                break;
            }
            _heap.Dequeue();
        }
        if (next == _armedAt)
            return;
        _armedAt = next;
        itimerspec spec = default;
        if (next != long.MaxValue)
        {
            // Stopwatch ticks are CLOCK_MONOTONIC nanoseconds on Linux (Stopwatch.Frequency = 1e9).
            long ns = Stopwatch.Frequency == 1_000_000_000 ? next : (long)(next * (1e9 / Stopwatch.Frequency));
            if (ns <= 0)
                ns = 1;
            spec.it_value.tv_sec = ns / 1_000_000_000;
            spec.it_value.tv_nsec = ns % 1_000_000_000;
        }
        SysCallException.Check(Libc.timerfd_settime(_timer.Fd, TFD_TIMER_ABSTIME, &spec, null), "timerfd_settime");
    }

    // --- transmit ----------------------------------------------------------------------

    private void Transmit(SessionCore s, long now, bool periodic)
    {
        fixed (byte* buf = s.TxBuffer)
        {
            int len = s.Fsm.BuildPacket(new Span<byte>(buf, s.TxBuffer.Length), now, periodic);
            nint rc = Libc.send(s.TxSocket.Fd, buf, (nuint)len, MSG_DONTWAIT);
            // A connected UDP socket reports an earlier ICMP port unreachable on the next send
            // (ECONNREFUSED) without sending: the peer was not listening yet. Send again.
            if (rc < 0 && ErrnoExtensions.Last() == Errno.ECONNREFUSED)
                rc = Libc.send(s.TxSocket.Fd, buf, (nuint)len, MSG_DONTWAIT);
            if (rc < 0)
            {
                s.CountSendError();
                Errno e = ErrnoExtensions.Last();
                if (_logger.IsEnabled(LogLevel.Warning))
                    Log.SendFailed(_logger, s.Peer, e.Name());
                return;
            }
        }
        s.CountSent();
        BfdMetrics.PacketsSent.Add(1);
    }

    // --- receive -----------------------------------------------------------------------

    private void Drain(Listener l)
    {
        int fd = l.Fd.Fd;
        iovec iov;
        iov.iov_base = _rx;
        iov.iov_len = RxBufferSize;
        msghdr msg;
        timespec rt;
        Libc.clock_gettime(CLOCK_REALTIME, &rt);
        long mono = Now();
        long realNs = (rt.tv_sec * 1_000_000_000) + rt.tv_nsec;
        while (true)
        {
            msg = default;
            msg.msg_name = _name;
            msg.msg_namelen = (uint)sizeof(sockaddr_in6);
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = _control;
            msg.msg_controllen = ControlSize;
            nint n = Libc.recvmsg(fd, &msg, MSG_DONTWAIT);
            if (n < 0)
            {
                Errno e = ErrnoExtensions.Last();
                if (e == Errno.EINTR)
                    continue;
                break; // EAGAIN: queue empty (other errors: nothing more to read now)
            }
            long now = Now();
            int ttl = -1, ifindex = 0;
            UInt128 dst = UInt128.Zero;
            long rxTime = now;
            for (cmsghdr* c = FirstCmsg(&msg); c != null; c = NextCmsg(&msg, c))
            {
                byte* data = (byte*)c + Cmsg.DataOffset;
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS)
                {
                    // SO_TIMESTAMPNS: CLOCK_REALTIME of arrival; mapped onto the monotonic clock.
                    timespec* ts = (timespec*)data;
                    long arrivalReal = (ts->tv_sec * 1_000_000_000) + ts->tv_nsec;
                    long t = mono + ((arrivalReal - realNs) * Stopwatch.Frequency / 1_000_000_000);
                    rxTime = Math.Min(t, now);
                }
                else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL)
                    ttl = *(int*)data;
                else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO)
                {
                    in_pktinfo* pi = (in_pktinfo*)data;
                    ifindex = pi->ipi_ifindex;
                    dst = MappedV4(pi->ipi_addr);
                }
                else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT)
                    ttl = *(int*)data;
                else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO)
                {
                    in6_pktinfo* pi = (in6_pktinfo*)data;
                    ifindex = pi->ipi6_ifindex;
                    dst = BinaryPrimitives.ReadUInt128BigEndian(new ReadOnlySpan<byte>(pi->ipi6_addr, 16));
                }
            }
            UInt128 src = l.V6
                ? BinaryPrimitives.ReadUInt128BigEndian(new ReadOnlySpan<byte>(_name->sin6_addr, 16))
                : MappedV4(((sockaddr_in*)_name)->sin_addr);
            if ((msg.msg_flags & MSG_TRUNC) != 0)
            {
                Dropped(null, src, "truncated");
                continue;
            }
            Process(new Span<byte>(_rx, (int)n), l.Multihop, src, dst, ifindex, ttl, rxTime, now);
        }
    }

    private void Process(Span<byte> data, bool multihop, UInt128 src, UInt128 dst, int ifindex, int ttl, long rxTime, long now)
    {
        PacketError err = ControlPacket.TryRead(data, out ControlPacket p);
        if (err != PacketError.None)
        {
            Dropped(null, src, err switch
            {
                PacketError.TooShort => "shorter than 24 bytes",
                PacketError.BadVersion => "version is not 1",
                PacketError.LengthTooSmall => "Length below minimum",
                PacketError.LengthExceedsPayload => "Length above payload",
                PacketError.ZeroDetectMult => "Detect Mult is zero",
                PacketError.MultipointSet => "M bit set",
                PacketError.ZeroMyDiscriminator => "My Discriminator is zero",
                _ => "malformed authentication section",
            });
            return;
        }
        SessionCore? s;
        if (p.YourDiscriminator != 0)
        {
            // RFC 5880 6.8.6: "If the Your Discriminator field is nonzero, it MUST be used to select
            // the session with which this BFD packet is associated. If no session is found, the
            // packet MUST be discarded."
            if (!_byDiscriminator.TryGetValue(p.YourDiscriminator, out s)
                || s.Key.Multihop != multihop || s.Key.Peer != src || (s.IfIndex != 0 && s.IfIndex != ifindex))
            {
                Dropped(null, src, "no session for Your Discriminator");
                return;
            }
        }
        else
        {
            // RFC 5880 6.8.6: "If the Your Discriminator field is zero, the session MUST be selected
            // based on some combination of other fields" (RFC 5881 3: source address and interface;
            // RFC 5883: source and destination addresses).
            int ifx = multihop ? 0 : ifindex;
            if (!_byKey.TryGetValue(new SessionKey(src, dst, ifx, multihop), out s)
                && !_byKey.TryGetValue(new SessionKey(src, UInt128.Zero, ifx, multihop), out s)
                && !_byKey.TryGetValue(new SessionKey(src, dst, 0, multihop), out s)
                && !_byKey.TryGetValue(new SessionKey(src, UInt128.Zero, 0, multihop), out s))
            {
                Dropped(null, src, "no session for source address");
                return;
            }
        }
        if (s.Removed)
            return;
        if (!multihop)
        {
            // RFC 5881 5: "If [authentication is not in use] the TTL or Hop Limit of received
            // packets MUST be 255"; checked always here (GTSM, RFC 5082).
            if (ttl != BfdSockets.SendTtl)
            {
                Dropped(s, src, "TTL/hop limit is not 255 (RFC 5881 5)");
                return;
            }
        }
        else if (ttl < s.Options.MinimumTtl)
        {
            // RFC 5883 2: multihop packets below the configured minimum TTL are discarded.
            Dropped(s, src, "TTL/hop limit below the configured minimum (RFC 5883)");
            return;
        }
        BfdStateMachine f = s.Fsm;
        long deadline = f.DetectDeadline;
        ReceiveResult r = f.Receive(data, p, rxTime, now);
        if (r != ReceiveResult.Accepted && r != ReceiveResult.AdminDownDiscard)
        {
            if (r == ReceiveResult.AuthFailed || r == ReceiveResult.AuthMismatch)
            {
                s.CountAuthFailure();
                BfdMetrics.AuthFailures.Add(1);
            }
            Dropped(s, src, r.ToString());
            return;
        }
        s.CountReceived();
        BfdMetrics.PacketsReceived.Add(1);
        if (deadline != BfdStateMachine.Never)
            BfdMetrics.DetectionMargin.Record((deadline - rxTime) * 1000.0 / Stopwatch.Frequency);
        if (f.FinalPending)
            Transmit(s, now, periodic: false);
        Reschedule(s);
    }

    private void Dropped(SessionCore? s, UInt128 src, string reason)
    {
        s?.CountDropped();
        BfdMetrics.PacketsDropped.Add(1);
        if (_logger.IsEnabled(LogLevel.Debug))
            Log.Dropped(_logger, ToAddress(src), reason);
    }

    private static UInt128 MappedV4(uint networkOrder)
    {
        uint host = (uint)IPAddress.NetworkToHostOrder((int)networkOrder);
        return ((UInt128)0xFFFFu << 32) | host;
    }

    internal static IPAddress ToAddress(UInt128 key)
    {
        Span<byte> b = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128BigEndian(b, key);
        var a = new IPAddress(b);
        return a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a;
    }

    private static cmsghdr* FirstCmsg(msghdr* m) =>
        m->msg_controllen >= (nuint)sizeof(cmsghdr) ? (cmsghdr*)m->msg_control : null;

    private static cmsghdr* NextCmsg(msghdr* m, cmsghdr* c)
    {
        if (c->cmsg_len < (nuint)sizeof(cmsghdr))
            return null;
        byte* next = (byte*)c + Cmsg.Align((int)c->cmsg_len);
        byte* end = (byte*)m->msg_control + m->msg_controllen;
        if (next + sizeof(cmsghdr) > end)
            return null;
        cmsghdr* n = (cmsghdr*)next;
        if ((byte*)n + Cmsg.Align((int)n->cmsg_len) > end)
            return null;
        return n;
    }

    private void Add(int fd, ulong tag)
    {
        epoll_event ev = default;
        ev.events = EPOLLIN;
        ev.data = tag;
        SysCallException.Check(Libc.epoll_ctl(_epoll.Fd, EPOLL_CTL_ADD, fd, &ev), "epoll_ctl(ADD)");
    }

    public void Dispose()
    {
        if (_stop)
            return;
        _stop = true;
        ulong one = 1;
        Libc.write(_event.Fd, &one, sizeof(ulong));
        if (_thread.IsAlive && Thread.CurrentThread != _thread)
            _thread.Join(TimeSpan.FromSeconds(5));
        foreach (SessionCore s in _byDiscriminator.Values)
        {
            s.TxSocket.Dispose();
            s.CompleteSubscribers();
        }
        foreach (Listener l in _listeners)
            l.Fd.Dispose();
        _timer.Dispose();
        _event.Dispose();
        _epoll.Dispose();
        NativeMemory.AlignedFree(_rx);
        NativeMemory.AlignedFree(_control);
        NativeMemory.Free(_name);
        NativeMemory.Free(_events);
    }
}
