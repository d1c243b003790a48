using System.Net;
using System.Net.Sockets;

namespace Netcore.Egress.Proxy;

/// <summary>
/// Happy Eyeballs version 2 (RFC 8305) for the proxy's outbound connections: both address families
/// are looked up, the addresses are ordered with the families interleaved (IPv6 first), and the
/// connection attempts are started one Connection Attempt Delay apart, the first to complete the
/// TCP handshake winning and the others cancelled. Only the families the caller can connect from
/// (those with a shared address) are looked up and tried.
/// </summary>
internal static class HappyEyeballs
{
    /// <summary>RFC 8305 3: after the A answer, wait this long for the AAAA answer before going on without it (recommended 50 ms).</summary>
    public static readonly TimeSpan ResolutionDelay = TimeSpan.FromMilliseconds(50);

    /// <summary>RFC 8305 5: the next attempt starts this long after the previous one (recommended default 250 ms; 8: at least 100 ms, at most 2 s).</summary>
    public static readonly TimeSpan ConnectionAttemptDelay = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// Looks <paramref name="host"/> up in the families asked for (RFC 8305 3: the AAAA and the A
    /// query at once, through getaddrinfo with each family). RFC 8305 3: when the AAAA answer comes
    /// first (with addresses) the attempts start at once and the A answer joins them when it comes
    /// (<see cref="ResolvedAddresses.Later"/>); when the A answer comes first the AAAA answer gets
    /// <see cref="ResolutionDelay"/> more, and if it is still missing the attempts start with IPv4
    /// and the AAAA answer joins later.
    /// </summary>
    public static async Task<ResolvedAddresses> ResolveAsync(string host, bool ipv4, bool ipv6, CancellationToken ct)
    {
        Task<IPAddress[]> q6 = ipv6 ? QueryAsync(host, AddressFamily.InterNetworkV6, ct) : Task.FromResult(Array.Empty<IPAddress>());
        Task<IPAddress[]> q4 = ipv4 ? QueryAsync(host, AddressFamily.InterNetwork, ct) : Task.FromResult(Array.Empty<IPAddress>());
        if (await Task.WhenAny(q4, q6).ConfigureAwait(false) == q6 || q6.IsCompleted)
        {
            IPAddress[] a6 = await q6.ConfigureAwait(false);
            if (q4.IsCompleted || a6.Length == 0)
                return new ResolvedAddresses(Order(a6, await q4.ConfigureAwait(false)), null);
            return new ResolvedAddresses(a6, q4);
        }
        await Task.WhenAny(q6, Task.Delay(ResolutionDelay, ct)).ConfigureAwait(false);
        IPAddress[] a4 = await q4.ConfigureAwait(false);
        if (q6.IsCompleted || a4.Length == 0)
            return new ResolvedAddresses(Order(await q6.ConfigureAwait(false), a4), null);
        return new ResolvedAddresses(a4, q6);
    }

    private static async Task<IPAddress[]> QueryAsync(string host, AddressFamily family, CancellationToken ct)
    {
        try
        {
            // getaddrinfo blocks its thread for the whole lookup (seconds with a slow DNS server), and
            // Dns.GetHostAddressesAsync runs it on the thread pool: two slow lookups there starved the
            // proxy's other work until the pool added threads (up to 1 s more per connection,
            // measured). Each lookup gets a thread of its own instead; cancellation abandons it.
            var all = await Task.Factory.StartNew(() => Dns.GetHostAddresses(host, family), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)
                .WaitAsync(ct).ConfigureAwait(false);
            // An IPv4-mapped address is an IPv4 address in disguise, a zone a link-local destination: neither is tried.
            return [.. all.Where(a => a.AddressFamily == family && !(family == AddressFamily.InterNetworkV6 && (a.IsIPv4MappedToIPv6 || a.ScopeId != 0)))];
        }
        catch (SocketException)
        {
            return []; // no address of this family (or the name does not exist)
        }
    }

    /// <summary>
    /// RFC 8305 4: the families interleaved, one address of the preferred family, then one of the
    /// other, and so on (First Address Family Count 1), IPv6 first: RFC 6724's default policy table
    /// (2.1) ranks a global IPv6 destination (precedence 40) above an IPv4 one (::ffff:0:0/96,
    /// precedence 35), and a global IPv6 source is there (the shared IPv6 address). Within a family
    /// the resolver's order is kept (getaddrinfo sorts by RFC 6724 6). The caller passes the family
    /// to start with first (IPv6, unless an IPv6 attempt was the last one made).
    /// </summary>
    public static IReadOnlyList<IPAddress> Order(IReadOnlyList<IPAddress> first, IReadOnlyList<IPAddress> second)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        var list = new List<IPAddress>(first.Count + second.Count);
        for (int i = 0; i < Math.Max(first.Count, second.Count); i++)
        {
            if (i < first.Count)
                list.Add(first[i]);
            if (i < second.Count)
                list.Add(second[i]);
        }
        return list;
    }

    /// <summary>
    /// RFC 8305 5: one attempt at a time is started, the next <paramref name="delay"/> after the
    /// previous one (earlier when every attempt in flight has failed: there is nothing to wait for);
    /// the attempts run in parallel, the first to connect wins, the others are cancelled and the
    /// addresses not yet tried are ignored. The addresses of <see cref="ResolvedAddresses.Later"/>
    /// join the ones not yet tried when they come (RFC 8305 4: the list re-sorted, the families
    /// interleaved starting with the family the last attempt did not use). <paramref name="create"/>
    /// makes the socket for an address (bound to the shared address of its family). Throws the last
    /// attempt's error when all fail, <see cref="OperationCanceledException"/> when
    /// <paramref name="ct"/> ends first.
    /// </summary>
    /// <returns>The connected socket and the address it connected to.</returns>
    public static async Task<(Socket Socket, IPAddress Address)> ConnectAsync(ResolvedAddresses resolved, int port, Func<IPAddress, Socket> create, TimeSpan delay, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(resolved);
        ArgumentNullException.ThrowIfNull(create);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var running = new List<(Task Task, Socket Socket, IPAddress Address)>();
        var queue = new List<IPAddress>(resolved.First);
        Task<IPAddress[]>? later = resolved.Later;
        Exception? last = null;
        AddressFamily lastFamily = AddressFamily.Unspecified;
        bool startNext = true;
        var sinceLastStart = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            while (true)
            {
                if (startNext && queue.Count > 0)
                {
                    var a = queue[0];
                    queue.RemoveAt(0);
                    lastFamily = a.AddressFamily;
                    sinceLastStart.Restart();
                    try
                    {
                        var s = create(a);
                        running.Add((s.ConnectAsync(new IPEndPoint(a, port), cancel.Token).AsTask(), s, a));
                    }
                    catch (SocketException e)
                    {
                        last = e; // no socket from this family's shared address: the next address at once
                        continue;
                    }
                }
                startNext = false;
                if (running.Count == 0 && queue.Count == 0 && later is null)
                    throw last ?? new SocketException((int)SocketError.HostNotFound);
                var waitFor = running.Select(r => r.Task).ToList();
                // The delay counts from the last attempt's start (a merged answer does not restart it).
                Task? timer = running.Count > 0 && queue.Count > 0 ? Task.Delay(delay > sinceLastStart.Elapsed ? delay - sinceLastStart.Elapsed : TimeSpan.Zero, cancel.Token) : null;
                if (timer is not null)
                    waitFor.Add(timer);
                if (later is not null)
                    waitFor.Add(later);
                var done = await Task.WhenAny(waitFor).ConfigureAwait(false);
                ct.ThrowIfCancellationRequested();
                if (done == timer)
                {
                    startNext = true; // the delay passed without a connection: the next attempt
                    continue;
                }
                if (done == later)
                {
                    // The other family's answer: merged into the addresses not yet tried; an attempt
                    // starts at once only if none is running (the delay still spaces attempts).
                    IPAddress[] more = later.IsCompletedSuccessfully ? later.Result : [];
                    later = null;
                    queue = [.. Interleave(queue.Concat(more), lastFamily)];
                    startNext = running.Count == 0;
                    continue;
                }
                int i = running.FindIndex(r => r.Task == done);
                var attempt = running[i];
                running.RemoveAt(i);
                if (done.IsCompletedSuccessfully)
                    return (attempt.Socket, attempt.Address);
                last = done.Exception?.InnerException ?? last;
                attempt.Socket.Dispose();
                startNext = true; // a failure frees the next attempt at once
            }
        }
        finally
        {
            // The losers (and the pending timer) are cancelled; their sockets closed.
            await cancel.CancelAsync().ConfigureAwait(false);
            foreach (var r in running)
                r.Socket.Dispose();
        }
    }

    /// <summary>The addresses with the families interleaved, starting with the family other than <paramref name="lastTried"/> (IPv6 when none).</summary>
    private static IReadOnlyList<IPAddress> Interleave(IEnumerable<IPAddress> addresses, AddressFamily lastTried)
    {
        var list = addresses.ToList();
        var v6 = list.Where(a => a.AddressFamily == AddressFamily.InterNetworkV6).ToList();
        var v4 = list.Where(a => a.AddressFamily == AddressFamily.InterNetwork).ToList();
        return lastTried == AddressFamily.InterNetworkV6 ? Order(v4, v6) : Order(v6, v4);
    }
}

/// <summary>The addresses to try first, and the answer of the other family if it had not come yet.</summary>
/// <param name="First">Addresses known when the first attempt starts, in the order to try them.</param>
/// <param name="Later">The slower family's lookup, or null.</param>
internal sealed record ResolvedAddresses(IReadOnlyList<IPAddress> First, Task<IPAddress[]>? Later);
