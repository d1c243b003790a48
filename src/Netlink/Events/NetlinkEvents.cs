using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Netcore.Interop;
using Netcore.Netlink.Core;
using static Netcore.Interop.LinuxConstants;

namespace Netcore.Netlink;

/// <summary>rtnetlink multicast groups to subscribe to (mapped to RTNLGRP_* of linux/rtnetlink.h).</summary>
[Flags]
public enum NetlinkEventGroups
{
    /// <summary>Nothing.</summary>
    None = 0,
    /// <summary>RTNLGRP_LINK.</summary>
    Link = 1,
    /// <summary>RTNLGRP_IPV4_IFADDR.</summary>
    Ipv4Address = 2,
    /// <summary>RTNLGRP_IPV6_IFADDR.</summary>
    Ipv6Address = 4,
    /// <summary>RTNLGRP_IPV4_ROUTE.</summary>
    Ipv4Route = 8,
    /// <summary>RTNLGRP_IPV6_ROUTE.</summary>
    Ipv6Route = 16,
    /// <summary>RTNLGRP_NEIGH.</summary>
    Neighbour = 32,
    /// <summary>RTNLGRP_IPV4_RULE.</summary>
    Ipv4Rule = 64,
    /// <summary>RTNLGRP_IPV6_RULE.</summary>
    Ipv6Rule = 128,
    /// <summary>Both address groups.</summary>
    Addresses = Ipv4Address | Ipv6Address,
    /// <summary>Both route groups.</summary>
    Routes = Ipv4Route | Ipv6Route,
    /// <summary>Both rule groups.</summary>
    Rules = Ipv4Rule | Ipv6Rule,
    /// <summary>Every group above.</summary>
    All = 255,
}

/// <summary>A change notified by the kernel.</summary>
public abstract record NetlinkEvent
{
    /// <summary>True for RTM_DEL* (the object is gone), false for RTM_NEW*.</summary>
    public bool Removed { get; init; }
}

/// <summary>A link appeared, changed or went away.</summary>
/// <param name="Link">The link.</param>
public sealed record LinkEvent(Link Link) : NetlinkEvent;

/// <summary>An address was added or removed.</summary>
/// <param name="Address">The address.</param>
public sealed record AddressEvent(InterfaceAddress Address) : NetlinkEvent;

/// <summary>A route was added, replaced or removed.</summary>
/// <param name="Route">The route.</param>
public sealed record RouteEvent(Route Route) : NetlinkEvent;

/// <summary>A neighbour or FDB entry changed.</summary>
/// <param name="Neighbour">The entry.</param>
public sealed record NeighbourEvent(Neighbour Neighbour) : NetlinkEvent;

/// <summary>A rule was added or removed.</summary>
/// <param name="Rule">The rule.</param>
public sealed record RuleEvent(Rule Rule) : NetlinkEvent;

/// <summary>
/// The kernel dropped notifications because the socket's receive buffer was full (ENOBUFS):
/// state derived from events is no longer complete. Dump again (resync) — e.g.
/// <see cref="NetlinkClient.GetRoutesAsync"/> — and continue with the events that follow.
/// </summary>
public sealed record OverrunEvent : NetlinkEvent;

/// <summary>Options of an event stream.</summary>
public sealed record NetlinkEventOptions
{
    /// <summary>Socket receive buffer (SO_RCVBUFFORCE, falls back to SO_RCVBUF). Default 8 MiB.</summary>
    public int ReceiveBufferSize { get; init; } = 8 << 20;

    /// <summary>Events buffered between the socket and the consumer. Default 4096; when full the reader stops and the kernel buffer fills.</summary>
    public int Capacity { get; init; } = 4096;
}

/// <summary>
/// A subscription to rtnetlink notifications: the socket joins its groups when created, so no
/// change made after <see cref="NetlinkClient.Subscribe"/> returns is missed. A dedicated thread
/// reads the socket and parses events; the consumer reads them with <see cref="ReadAllAsync"/>.
/// </summary>
public sealed class NetlinkEventStream : IDisposable
{
    private static readonly Counter<long> Overruns = NetlinkClient.Meter.CreateCounter<long>("netcore.netlink.event_overruns", description: "ENOBUFS overruns on event sockets");
    private readonly NetlinkSocket _socket;
    private readonly SafeFd _stop;
    private readonly Channel<NetlinkEvent> _channel;
    private readonly CancellationTokenSource _cts = new();
    private readonly ILogger _logger;
    private readonly Thread _thread;
    private int _disposed;

    internal NetlinkEventStream(NetlinkClient client, NetlinkEventGroups groups, NetlinkEventOptions o)
    {
        _logger = client.Logger;
        _socket = client.CreateSocket(Nl.NETLINK_ROUTE, o.ReceiveBufferSize, nonBlocking: true);
        try
        {
            foreach (int g in GroupNumbers(groups))
                _socket.SetOption(SOL_NETLINK, Nl.NETLINK_ADD_MEMBERSHIP, g, $"setsockopt(NETLINK_ADD_MEMBERSHIP {g})");
            _stop = SafeFd.FromResult(Libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd");
        }
        catch
        {
            _socket.Dispose();
            throw;
        }
        _channel = Channel.CreateBounded<NetlinkEvent>(new BoundedChannelOptions(Math.Max(1, o.Capacity))
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _thread = new Thread(ReadLoop) { IsBackground = true, Name = "netcore-netlink-events" };
        _thread.Start();
    }

    private static IEnumerable<int> GroupNumbers(NetlinkEventGroups g)
    {
        if ((g & NetlinkEventGroups.Link) != 0) yield return Nl.RTNLGRP_LINK;
        if ((g & NetlinkEventGroups.Ipv4Address) != 0) yield return Nl.RTNLGRP_IPV4_IFADDR;
        if ((g & NetlinkEventGroups.Ipv6Address) != 0) yield return Nl.RTNLGRP_IPV6_IFADDR;
        if ((g & NetlinkEventGroups.Ipv4Route) != 0) yield return Nl.RTNLGRP_IPV4_ROUTE;
        if ((g & NetlinkEventGroups.Ipv6Route) != 0) yield return Nl.RTNLGRP_IPV6_ROUTE;
        if ((g & NetlinkEventGroups.Neighbour) != 0) yield return Nl.RTNLGRP_NEIGH;
        if ((g & NetlinkEventGroups.Ipv4Rule) != 0) yield return Nl.RTNLGRP_IPV4_RULE;
        if ((g & NetlinkEventGroups.Ipv6Rule) != 0) yield return Nl.RTNLGRP_IPV6_RULE;
    }

    /// <summary>Reads the next event.</summary>
    public ValueTask<NetlinkEvent> ReadAsync(CancellationToken cancellationToken = default) => _channel.Reader.ReadAsync(cancellationToken);

    /// <summary>Streams events until the stream is disposed or <paramref name="cancellationToken"/> fires.</summary>
    public IAsyncEnumerable<NetlinkEvent> ReadAllAsync(CancellationToken cancellationToken = default) => _channel.Reader.ReadAllAsync(cancellationToken);

    /// <summary>Parses one notification message into an event (null for kinds not subscribed here).</summary>
    internal static NetlinkEvent? Parse(in NetlinkMessage m)
    {
        switch (m.Type)
        {
            case Nl.RTM_NEWLINK or Nl.RTM_DELLINK when LinkCodec.TryParse(m, out Link l):
                return new LinkEvent(l) { Removed = m.Type == Nl.RTM_DELLINK };
            case Nl.RTM_NEWADDR or Nl.RTM_DELADDR when AddressCodec.TryParse(m, out InterfaceAddress a):
                return new AddressEvent(a) { Removed = m.Type == Nl.RTM_DELADDR };
            case Nl.RTM_NEWROUTE or Nl.RTM_DELROUTE when RouteCodec.TryParse(m, out Route r):
                return new RouteEvent(r) { Removed = m.Type == Nl.RTM_DELROUTE };
            case Nl.RTM_NEWNEIGH or Nl.RTM_DELNEIGH when NeighbourCodec.TryParse(m, out Neighbour n):
                return new NeighbourEvent(n) { Removed = m.Type == Nl.RTM_DELNEIGH };
            case Nl.RTM_NEWRULE or Nl.RTM_DELRULE when RuleCodec.TryParse(m, out Rule ru):
                return new RuleEvent(ru) { Removed = m.Type == Nl.RTM_DELRULE };
            default:
                return null;
        }
    }

    private unsafe void ReadLoop()
    {
        Exception? failure = null;
        var batch = new List<NetlinkEvent>();
        try
        {
            var fds = stackalloc pollfd[2];
            while (!_cts.IsCancellationRequested)
            {
                fds[0] = new pollfd { fd = _socket.Handle.Fd, events = POLLIN };
                fds[1] = new pollfd { fd = _stop.Fd, events = POLLIN };
                int r = Libc.poll(fds, 2, -1);
                if (r < 0)
                {
                    if (ErrnoExtensions.Last() == Errno.EINTR)
                        continue;
                    SysCallException.ThrowLast("poll(netlink events)");
                }
                if (fds[1].revents != 0)
                    break;
                while (true)
                {
                    batch.Clear();
                    bool more;
                    try
                    {
                        more = Drain(batch);
                    }
                    catch (SysCallException e) when (e.Errno == Errno.ENOBUFS)
                    {
                        // linux/netlink.h: ENOBUFS on a multicast socket means notifications were dropped.
                        Overruns.Add(1);
                        Log.EventOverrun(_logger);
                        batch.Add(new OverrunEvent());
                        more = true;
                    }
                    foreach (NetlinkEvent ev in batch)
                        if (!Publish(ev))
                            return;
                    if (!more)
                        break;
                }
            }
        }
#pragma warning disable CA1031 // handed to the consumer through the channel
        catch (Exception e)
#pragma warning restore CA1031
        {
            failure = e;
        }
        finally
        {
            _channel.Writer.TryComplete(failure);
        }
    }

    /// <summary>Reads one datagram if any; returns false when the socket is empty.</summary>
    private bool Drain(List<NetlinkEvent> into)
    {
        ReadOnlySpan<byte> d = _socket.Receive(dontWait: true);
        if (d.IsEmpty)
            return false;
        var reader = new NetlinkMessageReader(d);
        while (reader.TryRead(out NetlinkMessage m))
        {
            if (Parse(m) is { } ev)
                into.Add(ev);
        }
        return true;
    }

    private bool Publish(NetlinkEvent ev)
    {
        while (!_channel.Writer.TryWrite(ev))
        {
            try
            {
                if (!_channel.Writer.WaitToWriteAsync(_cts.Token).AsTask().GetAwaiter().GetResult())
                    return false;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Stops the reader thread and closes the socket.</summary>
    public unsafe void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _cts.Cancel();
        ulong one = 1;
        _ = Libc.write(_stop.Fd, &one, 8);
        _thread.Join();
        _channel.Writer.TryComplete();
        _socket.Dispose();
        _stop.Dispose();
        _cts.Dispose();
    }
}

public sealed partial class NetlinkClient
{
    /// <summary>Subscribes to notifications in this client's namespace; the groups are joined before this returns.</summary>
    public NetlinkEventStream Subscribe(NetlinkEventGroups groups, NetlinkEventOptions? options = null) =>
        new(this, groups, options ?? new NetlinkEventOptions());

    /// <summary>Streams notifications of <paramref name="groups"/> until cancelled (subscribes when enumeration starts).</summary>
    public async IAsyncEnumerable<NetlinkEvent> WatchAsync(NetlinkEventGroups groups, NetlinkEventOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using NetlinkEventStream s = Subscribe(groups, options);
        await foreach (NetlinkEvent e in s.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            yield return e;
    }
}
