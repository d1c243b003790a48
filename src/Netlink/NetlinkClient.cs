using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>Options of a <see cref="NetlinkClient"/>.</summary>
public sealed record NetlinkClientOptions
{
    /// <summary>How many times a dump flagged NLM_F_DUMP_INTR is retried before <see cref="NetlinkDumpInterruptedException"/>. Default 8.</summary>
    public int DumpRetries { get; init; } = 8;

    /// <summary>Receive buffer of request sockets in bytes (SO_RCVBUFFORCE); 0 keeps the kernel default. Default 4 MiB.</summary>
    public int ReceiveBufferSize { get; init; } = 4 << 20;

    /// <summary>Largest datagram a pipelined batch sends in one sendmsg, in bytes. Default 48 KiB (below the default socket send buffer).</summary>
    public int BatchBytes { get; init; } = 48 * 1024;

    /// <summary>Idle sockets kept for reuse. Default 4.</summary>
    public int SocketPoolSize { get; init; } = 4;

    /// <summary>Logger for retries and overruns; defaults to none.</summary>
    public ILogger? Logger { get; init; }
}

/// <summary>
/// An rtnetlink client bound to one network namespace: links (veth, bridge, vxlan, tun/tap...),
/// addresses, routes, rules, neighbours, tc, XDP attach, namespaces ids and events. Thread-safe:
/// each operation uses its own socket from a small pool, so concurrent calls and nested calls
/// inside a dump loop are fine. Requests complete synchronously (the kernel answers rtnetlink
/// requests inside sendmsg) and are exposed as <see cref="ValueTask"/>.
/// </summary>
public sealed partial class NetlinkClient : IDisposable
{
    internal static readonly Meter Meter = new("Netcore.Netlink");
    private static readonly Counter<long> Requests = Meter.CreateCounter<long>("netcore.netlink.requests", description: "netlink requests sent");
    private static readonly Counter<long> DumpRetriesCounter = Meter.CreateCounter<long>("netcore.netlink.dump_retries", description: "dumps restarted after NLM_F_DUMP_INTR");

    private readonly ConcurrentBag<NetlinkSocket> _pool = [];
    private readonly bool _ownsNamespace;
    private bool _disposed;
    private int _dumpRetries;

    /// <summary>Dumps restarted after NLM_F_DUMP_INTR by this client (also the netcore.netlink.dump_retries counter).</summary>
    internal int DumpRetryCount => Volatile.Read(ref _dumpRetries);

    private NetlinkClient(NetworkNamespace ns, bool ownsNamespace, NetlinkClientOptions options)
    {
        Namespace = ns;
        _ownsNamespace = ownsNamespace;
        Options = options;
        Logger = options.Logger ?? NullLogger.Instance;
    }

    /// <summary>The namespace every socket of this client lives in.</summary>
    public NetworkNamespace Namespace { get; }

    /// <summary>The options in use.</summary>
    public NetlinkClientOptions Options { get; }

    internal ILogger Logger { get; }

    /// <summary>A client for <paramref name="ns"/> (the process's namespace when null). The caller keeps ownership of <paramref name="ns"/>.</summary>
    public static NetlinkClient Open(NetworkNamespace? ns = null, NetlinkClientOptions? options = null)
    {
        var c = new NetlinkClient(ns ?? NetworkNamespace.Current, false, options ?? new NetlinkClientOptions());
        c.Return(c.Rent()); // fail early (EPERM, missing namespace) and warm the pool
        return c;
    }

    /// <summary>A client for the named namespace (/run/netns/NAME) or namespace file path; the client owns the opened namespace.</summary>
    public static NetlinkClient Open(string namespaceNameOrPath, NetlinkClientOptions? options = null)
    {
        NetworkNamespace ns = NetworkNamespace.Open(namespaceNameOrPath);
        try
        {
            var c = new NetlinkClient(ns, true, options ?? new NetlinkClientOptions());
            c.Return(c.Rent());
            return c;
        }
        catch
        {
            ns.Dispose();
            throw;
        }
    }

    // ------------------------------------------------------------------------------------
    // Socket pool

    internal NetlinkSocket Rent()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_pool.TryTake(out NetlinkSocket? s))
            return s;
        int rcv = Options.ReceiveBufferSize;
        return Namespace.Run(() => NetlinkSocket.Create(Nl.NETLINK_ROUTE, rcv));
    }

    internal void Return(NetlinkSocket s)
    {
        if (s.Broken || _disposed || _pool.Count >= Options.SocketPoolSize)
            s.Dispose();
        else
            _pool.Add(s);
    }

    /// <summary>Creates a socket in this client's namespace (for event streams and generic netlink).</summary>
    internal NetlinkSocket CreateSocket(int protocol, int receiveBuffer, bool nonBlocking) =>
        Namespace.Run(() => NetlinkSocket.Create(protocol, receiveBuffer, nonBlocking));

    // ------------------------------------------------------------------------------------
    // Request patterns used by the typed operations

    /// <summary>Builds one request with NLM_F_REQUEST|NLM_F_ACK|<paramref name="flags"/> and waits for its ack.</summary>
    internal void Ack(ushort type, ushort flags, string operation, Action<NetlinkWriter> body)
    {
        NetlinkSocket s = Rent();
        using var w = new NetlinkWriter();
        try
        {
            uint seq = s.NextSeq();
            w.BeginMessage(type, (ushort)(Nl.NLM_F_REQUEST | Nl.NLM_F_ACK | flags), seq);
            body(w);
            w.EndMessage();
            Requests.Add(1);
            s.Ack(w.WrittenSpan, seq, operation);
        }
        catch (NetlinkException)
        {
            throw; // a complete error reply: the socket is in a clean state
        }
        catch
        {
            s.Broken = true;
            throw;
        }
        finally
        {
            Return(s);
        }
    }

    /// <summary>A non-dump GET with a single reply.</summary>
    internal bool Get<T>(ushort type, string operation, Action<NetlinkWriter> body, MessageParser<T> parser, out T value)
    {
        NetlinkSocket s = Rent();
        using var w = new NetlinkWriter();
        try
        {
            uint seq = s.NextSeq();
            w.BeginMessage(type, Nl.NLM_F_REQUEST, seq);
            body(w);
            w.EndMessage();
            Requests.Add(1);
            return s.Get(w.WrittenSpan, seq, operation, parser, out value);
        }
        catch (NetlinkException)
        {
            throw;
        }
        catch
        {
            s.Broken = true;
            throw;
        }
        finally
        {
            Return(s);
        }
    }

    /// <summary>
    /// Runs a dump into a list, retrying when the kernel flags it NLM_F_DUMP_INTR (the table changed
    /// during the dump, linux/netlink.h), up to <see cref="NetlinkClientOptions.DumpRetries"/> times.
    /// </summary>
    internal List<T> DumpList<T>(ushort type, string operation, Action<NetlinkWriter> body, MessageParser<T> parser, CancellationToken cancellationToken)
    {
        int attempts = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            attempts++;
            // Items are gathered in chunks below the large-object threshold and copied once into a
            // list of the exact size: growing one list to a million entries would allocate a series
            // of large arrays, and each large allocation can trigger a full (gen2) collection.
            var chunks = new List<T[]>();
            T[] current = new T[256];
            int used = 0, total = 0;
            bool interrupted = DumpRaw(type, operation, body, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (in NetlinkMessage m) =>
            {
                if (!parser(m, out T v))
                    return;
                if (used == current.Length)
                {
                    chunks.Add(current);
                    current = new T[Math.Min(current.Length * 2, 8192)];
                    used = 0;
                }
                current[used++] = v;
                total++;
            });
            if (!interrupted)
            {
                var list = new List<T>(total);
                foreach (T[] c in chunks)
                    list.AddRange(c);
                list.AddRange(current.AsSpan(0, used));
                return list;
            }
            DumpRetriesCounter.Add(1);
            Interlocked.Increment(ref _dumpRetries);
            Log.DumpInterrupted(Logger, operation, attempts);
            if (attempts > Options.DumpRetries)
                throw new NetlinkDumpInterruptedException(operation, attempts);
        }
    }

    /// <summary>Runs one dump attempt, handing each message to <paramref name="sink"/>; true when interrupted.</summary>
    internal bool DumpRaw(ushort type, string operation, Action<NetlinkWriter> body, DumpSink sink)
    {
        NetlinkSocket s = Rent();
        using var w = new NetlinkWriter();
        try
        {
            uint seq = s.NextSeq();
            w.BeginMessage(type, Nl.NLM_F_REQUEST | Nl.NLM_F_DUMP, seq);
            body(w);
            w.EndMessage();
            Requests.Add(1);
            return s.Dump(w.WrittenSpan, seq, operation, sink);
        }
        catch
        {
            s.Broken = true; // the rest of the dump may still be queued
            throw;
        }
        finally
        {
            Return(s);
        }
    }

    /// <summary>Yields a dump's items after a consistent (not interrupted) pass.</summary>
    internal async IAsyncEnumerable<T> DumpAsync<T>(ushort type, string operation, Action<NetlinkWriter> body, MessageParser<T> parser,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await Task.Yield();
        List<T> items = DumpList(type, operation, body, parser, cancellationToken);
        foreach (T item in items)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return item;
        }
    }

    /// <summary>
    /// Sends many requests pipelined: as many messages as fit in <see cref="NetlinkClientOptions.BatchBytes"/>
    /// go in one sendmsg; only the last of each datagram asks for an ack and the kernel reports each
    /// failure by sequence number (see <see cref="NetlinkSocket.BatchAcks"/>). Returns the failures
    /// as (index in <paramref name="items"/>, error).
    /// </summary>
    internal List<(int Index, NetlinkException Error)> Batch<TItem>(IEnumerable<TItem> items, ushort type, ushort flags, string operation,
        Action<NetlinkWriter, TItem> body, CancellationToken cancellationToken)
    {
        var errors = new List<(int, NetlinkException)>();
        NetlinkSocket s = Rent();
        using var w = new NetlinkWriter(Options.BatchBytes + 4096);
        try
        {
            int index = 0, chunkStartIndex = 0;
            uint firstSeq = 0, lastSeq = 0;
            int lastStart = 0;
            void Flush()
            {
                if (w.MessageCount == 0)
                    return;
                // Ask for an ack on the last message of the datagram only.
                w.OrFlags(lastStart, Nl.NLM_F_ACK);
                Requests.Add(w.MessageCount);
                s.Send(w.WrittenSpan);
                uint first = firstSeq;
                int baseIndex = chunkStartIndex;
                s.BatchAcks(firstSeq, lastSeq, operation, (seq, e) => errors.Add((baseIndex + (int)(seq - first), e)));
                w.Reset();
            }
            foreach (TItem item in items)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int start = w.Length;
                uint seq = s.NextSeq();
                if (w.MessageCount == 0)
                {
                    firstSeq = seq;
                    chunkStartIndex = index;
                }
                w.BeginMessage(type, (ushort)(Nl.NLM_F_REQUEST | flags), seq);
                body(w, item);
                w.EndMessage();
                lastSeq = seq;
                lastStart = start;
                index++;
                if (w.Length >= Options.BatchBytes)
                    Flush();
            }
            Flush();
            return errors;
        }
        catch
        {
            s.Broken = true;
            throw;
        }
        finally
        {
            Return(s);
        }
    }

    /// <summary>Closes the pooled sockets (and the namespace when the client opened it).</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        while (_pool.TryTake(out NetlinkSocket? s))
            s.Dispose();
        if (_ownsNamespace)
            Namespace.Dispose();
    }
}

internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "{Operation}: dump interrupted by concurrent changes (NLM_F_DUMP_INTR), attempt {Attempt}; retrying")]
    public static partial void DumpInterrupted(ILogger logger, string operation, int attempt);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "netlink event socket overrun (ENOBUFS): events were lost; consumers should resync")]
    public static partial void EventOverrun(ILogger logger);
}
