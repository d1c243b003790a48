using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Netcore.Egress.Daemon;

namespace Netcore.Egress.Proxy;

/// <summary>
/// HTTP CONNECT proxy (RFC 9110 9.3.6) on a loopback address: each CONNECT opens an outbound TCP
/// connection from the shared address and a port of this machine's range (<see cref="SourceSocket"/>)
/// and then relays bytes both ways. The same listener answers <c>GET /metrics</c> (Prometheus
/// text), <c>GET /healthz</c> and <c>GET /readyz</c>.
/// </summary>
internal sealed partial class ConnectProxy : IAsyncDisposable
{
    /// <summary>Largest request head read (request line and fields).</summary>
    private const int MaxHead = 8192;
    private static readonly TimeSpan s_connectTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan s_headTimeout = TimeSpan.FromSeconds(10);

    private volatile EgressConfig _config;
    private readonly Func<string> _metrics;
    private readonly Func<CancellationToken, Task<Api.Readiness>>? _ready;
    private readonly ProxyStats _stats;
    private readonly ILogger _log;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _clients = [];
    private Task? _accept;

    public ConnectProxy(EgressConfig config, ProxyStats stats, Func<string> metrics, ILogger log, Func<CancellationToken, Task<Api.Readiness>>? ready = null)
    {
        _ready = ready;
        _config = config;
        _stats = stats;
        _metrics = metrics;
        _log = log;
        _listener = new Socket(config.Listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
    }

    /// <summary>The bound address (port 0 in the settings picks one).</summary>
    public IPEndPoint LocalEndPoint => (IPEndPoint)_listener.LocalEndPoint!;

    /// <summary>New connections use <paramref name="config"/> (this machine's range after a reload).</summary>
    public void Update(EgressConfig config) => _config = config;

    public void Start()
    {
        _listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        _listener.Bind(_config.Listen);
        _listener.Listen(512);
        _accept = AcceptLoopAsync(_stop.Token);
    }

    private async Task AcceptLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException e) when (ct.IsCancellationRequested || e.SocketErrorCode == SocketError.OperationAborted)
            {
                return;
            }
            var t = ServeClientAsync(client, ct);
            lock (_clients)
            {
                _clients.RemoveAll(c => c.IsCompleted);
                _clients.Add(t);
            }
        }
    }

    private async Task ServeClientAsync(Socket client, CancellationToken ct)
    {
        using (client)
        {
            try
            {
                await HandleAsync(client, ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
            {
                Log.ClientError(_log, e.Message);
            }
        }
    }

    private async Task HandleAsync(Socket client, CancellationToken ct)
    {
        byte[] buf = new byte[MaxHead];
        int n = 0, end;
        using (var headCts = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            headCts.CancelAfter(s_headTimeout);
            while ((end = HeadEnd(buf.AsSpan(0, n))) < 0)
            {
                if (n == buf.Length)
                {
                    _stats.Fail(ProxyFailure.BadRequest);
                    await ReplyAsync(client, "431 Request Header Fields Too Large", "", ct).ConfigureAwait(false); // RFC 6585 5
                    return;
                }
                int r = await client.ReceiveAsync(buf.AsMemory(n), SocketFlags.None, headCts.Token).ConfigureAwait(false);
                if (r == 0)
                    return;
                n += r;
            }
        }
        if (!TryParseRequestLine(buf.AsSpan(0, end), out string method, out string target))
        {
            _stats.Fail(ProxyFailure.BadRequest);
            await ReplyAsync(client, "400 Bad Request", "", ct).ConfigureAwait(false);
            return;
        }
        if (method == "GET" && target == "/metrics")
        {
            await ReplyAsync(client, "200 OK", _metrics(), ct, "text/plain; version=0.0.4; charset=utf-8").ConfigureAwait(false);
            return;
        }
        if (method == "GET" && target == "/healthz")
        {
            await ReplyAsync(client, "200 OK", "ok\n", ct).ConfigureAwait(false);
            return;
        }
        if (method == "GET" && target == "/readyz" && _ready is not null)
        {
            var r = await _ready(ct).ConfigureAwait(false);
            await ReplyAsync(client, r.Ready ? "200 OK" : "503 Service Unavailable", r.Text, ct).ConfigureAwait(false);
            return;
        }
        if (method != "CONNECT")
        {
            _stats.Fail(ProxyFailure.BadRequest);
            // RFC 9110 15.5.6: 405 carries Allow.
            await ReplyAsync(client, "405 Method Not Allowed", "", ct, extra: "Allow: CONNECT, GET\r\n").ConfigureAwait(false);
            return;
        }
        if (!TryParseAuthority(target, out string host, out int port))
        {
            _stats.Fail(ProxyFailure.BadRequest);
            await ReplyAsync(client, "400 Bad Request", "", ct).ConfigureAwait(false);
            return;
        }
        await TunnelAsync(client, host, port, buf.AsMemory(end, n - end), ct).ConfigureAwait(false);
    }

    private async Task TunnelAsync(Socket client, string host, int port, ReadOnlyMemory<byte> early, CancellationToken ct)
    {
        var config = _config; // one configuration for the whole connection (a reload may swap it)
        bool has4 = config.SharedAddress is not null, has6 = config.SharedAddress6 is not null;
        ResolvedAddresses resolved;
        if (IPAddress.TryParse(host, out var lit))
        {
            // ::ffff:a.b.c.d is the IPv4 address in disguise; a zone is a link-local destination.
            resolved = new(lit.AddressFamily == AddressFamily.InterNetworkV6 && (lit.IsIPv4MappedToIPv6 || lit.ScopeId != 0) ? [] : [lit], null);
        }
        else
        {
            // Happy Eyeballs (RFC 8305): the families this machine has a shared address of, interleaved, IPv6 first.
            resolved = await HappyEyeballs.ResolveAsync(host, has4, has6, ct).ConfigureAwait(false);
        }
        var addresses = resolved.First;
        // The destination's family picks the shared address the connection leaves from.
        IPAddress? Source(IPAddress a) => a.AddressFamily switch
        {
            AddressFamily.InterNetwork => config.SharedAddress,
            AddressFamily.InterNetworkV6 => config.SharedAddress6,
            _ => null,
        };
        if (addresses.Count == 0 || addresses.All(a => Source(a) is null))
        {
            _stats.Fail(ProxyFailure.Connect);
            Log.ConnectFailed(_log, host, port, addresses.Count > 0
                ? (has6 ? "an IPv4 destination, and there is no shared IPv4 address (--address)" : "an IPv6 destination, and there is no shared IPv6 address (--address6)")
                : (has4, has6) switch
                {
                    (true, true) => "no usable IPv4 or IPv6 address",
                    (true, false) => "no IPv4 address (the only shared address is IPv4)",
                    _ => "no IPv6 address (the only shared address is IPv6)",
                });
            await ReplyAsync(client, "502 Bad Gateway", "", ct).ConfigureAwait(false);
            return;
        }
        Socket upstream;
        using (var cc = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            cc.CancelAfter(s_connectTimeout);
            try
            {
                // Each attempt from the shared address of its family and this machine's ports.
                (upstream, var winner) = await HappyEyeballs.ConnectAsync(resolved, port, a => SourceSocket.Create(Source(a)!, config.Ports),
                    HappyEyeballs.ConnectionAttemptDelay, cc.Token).ConfigureAwait(false);
                if (!ReferenceEquals(winner, addresses[0]))
                    Log.ConnectedToLaterAddress(_log, host, port, winner.ToString(), addresses[0].ToString());
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                _stats.Fail(ProxyFailure.Timeout);
                Log.ConnectFailed(_log, host, port, "timed out");
                await ReplyAsync(client, "504 Gateway Timeout", "", ct).ConfigureAwait(false); // RFC 9110 15.6.5
                return;
            }
            catch (SocketException e)
            {
                _stats.Fail(ProxyFailure.Connect);
                Log.ConnectFailed(_log, host, port, e.Message);
                await ReplyAsync(client, "502 Bad Gateway", "", ct).ConfigureAwait(false); // RFC 9110 15.6.3
                return;
            }
        }
        using var upstreamOwner = upstream;
        var local = (IPEndPoint)upstream.LocalEndPoint!;
        if (!config.Ports.Contains(local.Port))
        {
            // The kernel clamps IP_LOCAL_PORT_RANGE to net.ipv4.ip_local_port_range
            // (inet_sk_get_local_port_range); a port of another machine must never be used.
            _stats.Fail(ProxyFailure.PortOutOfRange);
            Log.PortOutOfRange(_log, local.Port, config.Ports.ToString());
            await ReplyAsync(client, "502 Bad Gateway", "", ct).ConfigureAwait(false);
            return;
        }
        // RFC 9110 9.3.6: any 2xx response to CONNECT means the tunnel is open.
        await client.SendAsync("HTTP/1.1 200 Connection Established\r\n\r\n"u8.ToArray(), SocketFlags.None, ct).ConfigureAwait(false);
        _stats.TunnelOpened();
        Log.TunnelOpened(_log, local.ToString(), host, port);
        try
        {
            if (!early.IsEmpty)
            {
                await upstream.SendAsync(early, SocketFlags.None, ct).ConfigureAwait(false);
                _stats.Bytes(true, early.Length);
            }
            var up = PumpAsync(client, upstream, true, ct);
            var down = PumpAsync(upstream, client, false, ct);
            await Task.WhenAll(up, down).ConfigureAwait(false);
        }
        finally
        {
            _stats.TunnelClosed();
        }
    }

    /// <summary>Copies until end of stream, then half-closes the other side (a FIN passes through).</summary>
    private async Task PumpAsync(Socket from, Socket to, bool up, CancellationToken ct)
    {
        byte[] b = new byte[16384];
        try
        {
            while (true)
            {
                int r = await from.ReceiveAsync(b, SocketFlags.None, ct).ConfigureAwait(false);
                if (r == 0)
                    break;
                int sent = 0;
                while (sent < r)
                    sent += await to.SendAsync(b.AsMemory(sent, r - sent), SocketFlags.None, ct).ConfigureAwait(false);
                _stats.Bytes(up, r);
            }
            to.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
            // A reset on one side: close both (the using blocks do).
            from.Close();
            to.Close();
        }
    }

    /// <summary>Offset just after the CRLF CRLF that ends the head (RFC 9112 2.1), or -1.</summary>
    internal static int HeadEnd(ReadOnlySpan<byte> b)
    {
        int i = b.IndexOf("\r\n\r\n"u8);
        return i < 0 ? -1 : i + 4;
    }

    /// <summary>RFC 9112 3: request-line = method SP request-target SP HTTP-version.</summary>
    internal static bool TryParseRequestLine(ReadOnlySpan<byte> head, out string method, out string target)
    {
        method = target = "";
        int eol = head.IndexOf("\r\n"u8);
        if (eol < 0)
            return false;
        string line = Encoding.ASCII.GetString(head[..eol]);
        string[] parts = line.Split(' ');
        if (parts.Length != 3 || parts[0].Length == 0 || parts[1].Length == 0 || !parts[2].StartsWith("HTTP/1.", StringComparison.Ordinal))
            return false;
        method = parts[0];
        target = parts[1];
        return true;
    }

    /// <summary>
    /// RFC 9112 3.2.3: authority-form = uri-host ":" port; uri-host is RFC 3986 3.2.2 host, where an
    /// IPv6 address is an IP-literal in brackets (<c>[2001:db8::1]:443</c>). An unbracketed host
    /// with a colon (<c>2001:db8::1:443</c>) is ambiguous and refused, as is a bracketed text that
    /// is not an IPv6 address (an IPvFuture literal or a zone index, which no server has a use for).
    /// </summary>
    internal static bool TryParseAuthority(string target, out string host, out int port)
    {
        host = "";
        port = 0;
        int colon = target.LastIndexOf(':');
        if (colon <= 0 || colon == target.Length - 1 || !int.TryParse(target.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535)
            return false;
        string h = target[..colon];
        if (h.StartsWith('['))
        {
            if (!h.EndsWith(']') || !IPAddress.TryParse(h[1..^1], out var a) || a.AddressFamily != AddressFamily.InterNetworkV6 || h.Contains('%', StringComparison.Ordinal))
                return false;
            host = h[1..^1];
            return true;
        }
        if (h.Contains(':', StringComparison.Ordinal) || h.Contains('[', StringComparison.Ordinal) || h.Contains(']', StringComparison.Ordinal))
            return false;
        host = h;
        return true;
    }

    private static async Task ReplyAsync(Socket client, string status, string body, CancellationToken ct, string contentType = "text/plain; charset=utf-8", string extra = "")
    {
        byte[] b = Encoding.UTF8.GetBytes(body);
        string head = $"HTTP/1.1 {status}\r\nContent-Type: {contentType}\r\nContent-Length: {b.Length.ToString(CultureInfo.InvariantCulture)}\r\n{extra}Connection: close\r\n\r\n";
        await client.SendAsync(Encoding.ASCII.GetBytes(head), SocketFlags.None, ct).ConfigureAwait(false);
        if (b.Length > 0)
            await client.SendAsync(b, SocketFlags.None, ct).ConfigureAwait(false);
    }

    /// <summary>Stops accepting, closes open tunnels and waits for their tasks.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        if (_accept is not null)
            await _accept.ConfigureAwait(false);
        Task[] clients;
        lock (_clients)
            clients = [.. _clients];
        await Task.WhenAll(clients).ConfigureAwait(false);
        _stop.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(20, LogLevel.Debug, "tunnel {Local} -> {Host}:{Port} open")]
        public static partial void TunnelOpened(ILogger logger, string local, string host, int port);

        [LoggerMessage(21, LogLevel.Warning, "CONNECT {Host}:{Port} failed: {Reason}")]
        public static partial void ConnectFailed(ILogger logger, string host, int port, string reason);

        [LoggerMessage(22, LogLevel.Error, "the kernel picked source port {Port} outside this machine's range {Range}: net.ipv4.ip_local_port_range must contain the range")]
        public static partial void PortOutOfRange(ILogger logger, int port, string range);

        [LoggerMessage(24, LogLevel.Information, "CONNECT {Host}:{Port}: connected to {Address}; the attempt to {First} had not connected within the attempt delay or failed (Happy Eyeballs, RFC 8305)")]
        public static partial void ConnectedToLaterAddress(ILogger logger, string host, int port, string address, string first);

        [LoggerMessage(23, LogLevel.Debug, "client connection ended: {Reason}")]
        public static partial void ClientError(ILogger logger, string reason);
    }
}
