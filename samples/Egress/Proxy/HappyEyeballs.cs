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
    /// query at once, through getaddrinfo with each family) and returns the addresses in the order to
    /// try them (<see cref="Order"/>). When the A answer comes first the AAAA answer is waited for
    /// <see cref="ResolutionDelay"/> more, then left out. (When the AAAA answer comes first the A
    /// answer is waited for too, so the list is complete before the first attempt: the RFC's
    /// adding of late answers to a running list is not built.)
    /// </summary>
    public static async Task<IReadOnlyList<IPAddress>> ResolveAsync(string host, bool ipv4, bool ipv6, CancellationToken ct)
    {
        Task<IPAddress[]> q6 = ipv6 ? QueryAsync(host, AddressFamily.InterNetworkV6, ct) : Task.FromResult(Array.Empty<IPAddress>());
        Task<IPAddress[]> q4 = ipv4 ? QueryAsync(host, AddressFamily.InterNetwork, ct) : Task.FromResult(Array.Empty<IPAddress>());
        if (await Task.WhenAny(q4, q6).ConfigureAwait(false) == q4 && !q6.IsCompleted)
            await Task.WhenAny(q6, Task.Delay(ResolutionDelay, ct)).ConfigureAwait(false);
        IPAddress[] a4 = await q4.ConfigureAwait(false);
        IPAddress[] a6 = q6.IsCompleted ? await q6.ConfigureAwait(false) : [];
        return Order(a6, a4);
    }

    private static async Task<IPAddress[]> QueryAsync(string host, AddressFamily family, CancellationToken ct)
    {
        try
        {
            var all = await Dns.GetHostAddressesAsync(host, family, ct).ConfigureAwait(false);
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
    /// the resolver's order is kept (getaddrinfo sorts by RFC 6724 6).
    /// </summary>
    public static IReadOnlyList<IPAddress> Order(IReadOnlyList<IPAddress> ipv6, IReadOnlyList<IPAddress> ipv4)
    {
        ArgumentNullException.ThrowIfNull(ipv6);
        ArgumentNullException.ThrowIfNull(ipv4);
        var list = new List<IPAddress>(ipv6.Count + ipv4.Count);
        for (int i = 0; i < Math.Max(ipv6.Count, ipv4.Count); i++)
        {
            if (i < ipv6.Count)
                list.Add(ipv6[i]);
            if (i < ipv4.Count)
                list.Add(ipv4[i]);
        }
        return list;
    }

    /// <summary>
    /// RFC 8305 5: one attempt at a time is started, the next <paramref name="delay"/> after the
    /// previous one (earlier when every attempt in flight has failed: there is nothing to wait for);
    /// the attempts run in parallel, the first to connect wins, the others are cancelled and the
    /// addresses not yet tried are ignored. <paramref name="create"/> makes the socket for an address
    /// (bound to the shared address of its family). Throws the last attempt's error when all fail,
    /// <see cref="OperationCanceledException"/> when <paramref name="ct"/> ends first.
    /// </summary>
    /// <returns>The connected socket and the address it connected to.</returns>
    public static async Task<(Socket Socket, IPAddress Address)> ConnectAsync(IReadOnlyList<IPAddress> addresses, int port, Func<IPAddress, Socket> create, TimeSpan delay, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        ArgumentNullException.ThrowIfNull(create);
        if (addresses.Count == 0)
            throw new SocketException((int)SocketError.HostNotFound);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var running = new List<(Task Task, Socket Socket, IPAddress Address)>();
        Exception? last = null;
        int next = 0;
        try
        {
            while (true)
            {
                if (next < addresses.Count)
                {
                    var a = addresses[next++];
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
                if (running.Count == 0)
                    throw last ?? new SocketException((int)SocketError.HostNotFound);
                Task? timer = next < addresses.Count ? Task.Delay(delay, cancel.Token) : null;
                var waitFor = running.Select(r => r.Task).ToList();
                if (timer is not null)
                    waitFor.Add(timer);
                var done = await Task.WhenAny(waitFor).ConfigureAwait(false);
                ct.ThrowIfCancellationRequested();
                if (done == timer)
                    continue; // the delay passed without a connection: start the next attempt
                int i = running.FindIndex(r => r.Task == done);
                var attempt = running[i];
                running.RemoveAt(i);
                if (done.IsCompletedSuccessfully)
                    return (attempt.Socket, attempt.Address);
                last = done.Exception?.InnerException ?? last;
                attempt.Socket.Dispose();
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
}
