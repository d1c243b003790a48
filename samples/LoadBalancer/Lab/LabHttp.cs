using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Netcore.Threading;

namespace Netcore.LoadBalancer.Lab;

/// <summary>
/// A backend's HTTP server, hosted by the lab process: a listening socket created inside the
/// backend's namespace (on 0.0.0.0:80, so it takes connections to the VIP after decapsulation
/// and health checks to the backend's own address; with IPv6 backends also an IPv6-only one on
/// [::]:80 for the health checks to the backend's IPv6 address). Every response body is the backend's name.
/// HTTP/1.1 keep-alive is honoured so the tests can hold long-lived connections.
/// </summary>
internal sealed class BackendServer : IAsyncDisposable
{
    private readonly Socket[] _listeners;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task[] _accept;
    private readonly ConcurrentDictionary<Socket, byte> _open = new();
    private long _clientConnections, _requests, _otherConnections;

    private BackendServer(string name, Socket[] listeners, IPAddress clientAddress)
    {
        Name = name;
        _listeners = listeners;
        _accept = [.. listeners.Select(l => AcceptLoopAsync(l, clientAddress))];
    }

    /// <summary>The backend's name, the body of every response.</summary>
    public string Name { get; }

    /// <summary>Connections accepted from the lab's client (through the VIP).</summary>
    public long ClientConnections => Interlocked.Read(ref _clientConnections);

    /// <summary>Connections from anything else (the LB nodes' health checks).</summary>
    public long OtherConnections => Interlocked.Read(ref _otherConnections);

    /// <summary>Requests answered.</summary>
    public long Requests => Interlocked.Read(ref _requests);

    /// <summary>
    /// What GET /healthz answers: 200 while true, 503 while false (to fail the nodes' HTTP health
    /// checks without touching the data path). Other paths always answer 200 with the name.
    /// </summary>
    public bool Healthy { get; set; } = true;

    /// <summary>Starts listening on <paramref name="port"/> inside namespace <paramref name="ns"/> (and on [::]:port too with <paramref name="ipv6"/>).</summary>
    public static BackendServer Start(string ns, string name, int port, IPAddress clientAddress, bool ipv6 = false)
    {
        var listeners = new List<Socket>();
        try
        {
            listeners.Add(Listen(ns, IPAddress.Any, port));
            if (ipv6)
                listeners.Add(Listen(ns, IPAddress.IPv6Any, port));
            return new BackendServer(name, [.. listeners], clientAddress);
        }
        catch
        {
            foreach (Socket l in listeners)
                l.Dispose();
            throw;
        }
    }

    private static Socket Listen(string ns, IPAddress any, int port) =>
        NetnsThread.Run(LabTopology.NsPath(ns), () =>
        {
            var s = new Socket(any.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                if (any.AddressFamily == AddressFamily.InterNetworkV6)
                    s.DualMode = false;   // IPV6_V6ONLY: IPv4 stays with the IPv4 socket
                s.Bind(new IPEndPoint(any, port));
                s.Listen(1024);
                return s;
            }
            catch
            {
                s.Dispose();
                throw;
            }
        });

    private async Task AcceptLoopAsync(Socket listener, IPAddress clientAddress)
    {
        await Task.Yield();
        while (!_stop.IsCancellationRequested)
        {
            Socket c;
            try
            {
                c = await listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            if (c.RemoteEndPoint is IPEndPoint ep && ep.Address.Equals(clientAddress))
                Interlocked.Increment(ref _clientConnections);
            else
                Interlocked.Increment(ref _otherConnections);
            _open[c] = 0;
            _ = ServeAsync(c);
        }
    }

    private async Task ServeAsync(Socket c)
    {
        byte[] body = Encoding.ASCII.GetBytes(Name + "\n");
        try
        {
            using var stream = new NetworkStream(c, ownsSocket: true);
            var reader = new HttpReader(stream);
            while (await reader.ReadHeadAsync(_stop.Token).ConfigureAwait(false) is { } head)
            {
                // A request body (an upload through the VIP) is read and dropped.
                await reader.SkipBodyAsync(HttpReader.ContentLength(head), _stop.Token).ConfigureAwait(false);
                bool close = head.Contains("connection: close", StringComparison.OrdinalIgnoreCase);
                bool health = head.StartsWith("GET /healthz ", StringComparison.Ordinal);
                string status = health && !Healthy ? "503 Service Unavailable" : "200 OK";
                string response = string.Create(CultureInfo.InvariantCulture,
                    $"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {body.Length}\r\nConnection: {(close ? "close" : "keep-alive")}\r\n\r\n");
                Interlocked.Increment(ref _requests);
                await stream.WriteAsync(Encoding.ASCII.GetBytes(response), _stop.Token).ConfigureAwait(false);
                await stream.WriteAsync(body, _stop.Token).ConfigureAwait(false);
                if (close)
                    break;
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The peer went away or the lab is stopping.
        }
        finally
        {
            _open.TryRemove(c, out _);
        }
    }

    /// <summary>Stops accepting and closes every open connection.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (Socket l in _listeners)
            l.Dispose();
        foreach (Socket s in _open.Keys)
            s.Dispose();
        await Task.WhenAll(_accept).ConfigureAwait(false);
        _stop.Dispose();
    }
}

/// <summary>
/// A client connection made from inside a namespace (the socket is created on a thread in that
/// namespace and stays there). <see cref="GetAsync"/> sends one HTTP/1.1 request and returns the
/// body: the name of the backend that answered.
/// </summary>
internal sealed class LabHttpConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly HttpReader _reader;

    private LabHttpConnection(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = new HttpReader(_stream);
    }

    /// <summary>The local (client) port: with the addresses, the flow's 5-tuple.</summary>
    public int LocalPort => ((IPEndPoint)_socket.LocalEndPoint!).Port;

    /// <summary>Connects from namespace <paramref name="ns"/> to <paramref name="endPoint"/>, giving up after <paramref name="timeout"/>.</summary>
    public static async Task<LabHttpConnection> ConnectAsync(string ns, IPEndPoint endPoint, TimeSpan timeout, CancellationToken ct)
    {
        Socket s = NetnsThread.Run(LabTopology.NsPath(ns), () => new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp));
        try
        {
            s.NoDelay = true;
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(timeout);
            await s.ConnectAsync(endPoint, cts.Token).ConfigureAwait(false);
            return new LabHttpConnection(s);
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    /// <summary>One request on this connection; returns the response body without its line end.</summary>
    public Task<string> GetAsync(string path, bool close, TimeSpan timeout, CancellationToken ct) =>
        SendAsync("GET", path, 0, close, timeout, ct);

    /// <summary>
    /// One POST of <paramref name="bodyBytes"/> bytes on this connection (an upload: the client's
    /// full-size segments go through the load balancer); returns the answering backend's name.
    /// </summary>
    public Task<string> PostAsync(string path, int bodyBytes, TimeSpan timeout, CancellationToken ct) =>
        SendAsync("POST", path, bodyBytes, close: false, timeout, ct);

    private async Task<string> SendAsync(string method, string path, int bodyBytes, bool close, TimeSpan timeout, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        string contentLength = bodyBytes > 0 ? string.Create(CultureInfo.InvariantCulture, $"Content-Length: {bodyBytes}\r\n") : "";
        string req = $"{method} {path} HTTP/1.1\r\nHost: lab\r\n{contentLength}Connection: {(close ? "close" : "keep-alive")}\r\n\r\n";
        await _stream.WriteAsync(Encoding.ASCII.GetBytes(req), cts.Token).ConfigureAwait(false);
        if (bodyBytes > 0)
        {
            byte[] upload = new byte[bodyBytes];
            for (int i = 0; i < upload.Length; i++)
                upload[i] = (byte)('a' + i % 26);
            await _stream.WriteAsync(upload, cts.Token).ConfigureAwait(false);
        }
        string head = await _reader.ReadHeadAsync(cts.Token).ConfigureAwait(false)
            ?? throw new IOException("the connection closed before a response");
        if (!head.StartsWith("HTTP/1.1 200", StringComparison.Ordinal))
            throw new IOException("unexpected response: " + head.Split('\n')[0]);
        int length = HttpReader.ContentLength(head);
        byte[] body = await _reader.ReadBodyAsync(length, cts.Token).ConfigureAwait(false);
        return Encoding.ASCII.GetString(body).TrimEnd('\n');
    }

    /// <summary>A new connection, one request with Connection: close, and the answering backend's name.</summary>
    public static async Task<string> GetOnceAsync(string ns, IPEndPoint endPoint, TimeSpan timeout, CancellationToken ct)
    {
        using LabHttpConnection c = await ConnectAsync(ns, endPoint, timeout, ct).ConfigureAwait(false);
        return await c.GetAsync("/", close: true, timeout, ct).ConfigureAwait(false);
    }

    /// <summary>Closes the connection.</summary>
    public void Dispose() => _stream.Dispose();
}

/// <summary>Reads HTTP/1.1 message heads (up to the empty line) and fixed-length bodies from a stream.</summary>
internal sealed class HttpReader(Stream stream)
{
    private readonly byte[] _buf = new byte[8192];
    private int _start, _end;

    /// <summary>The next head as text, or null at a clean end of stream.</summary>
    public async Task<string?> ReadHeadAsync(CancellationToken ct)
    {
        while (true)
        {
            int idx = _buf.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8);
            if (idx >= 0)
            {
                string head = Encoding.ASCII.GetString(_buf, _start, idx);
                _start += idx + 4;
                return head;
            }
            if (!await FillAsync(ct).ConfigureAwait(false))
            {
                if (_end == _start)
                    return null;
                throw new IOException("the stream ended inside a message head");
            }
        }
    }

    /// <summary>Reads exactly <paramref name="length"/> body bytes.</summary>
    public async Task<byte[]> ReadBodyAsync(int length, CancellationToken ct)
    {
        while (_end - _start < length)
        {
            if (!await FillAsync(ct).ConfigureAwait(false))
                throw new IOException("the stream ended inside a body");
        }
        byte[] body = _buf.AsSpan(_start, length).ToArray();
        _start += length;
        return body;
    }

    /// <summary>Reads and drops <paramref name="length"/> body bytes, however many.</summary>
    public async Task SkipBodyAsync(long length, CancellationToken ct)
    {
        while (length > 0)
        {
            if (_end == _start && !await FillAsync(ct).ConfigureAwait(false))
                throw new IOException("the stream ended inside a body");
            int n = (int)Math.Min(length, _end - _start);
            _start += n;
            length -= n;
        }
    }

    private async Task<bool> FillAsync(CancellationToken ct)
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buf, _start, _buf, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }
        if (_end == _buf.Length)
            throw new IOException("HTTP message head too large");
        int n = await stream.ReadAsync(_buf.AsMemory(_end), ct).ConfigureAwait(false);
        _end += n;
        return n > 0;
    }

    /// <summary>The Content-Length header's value (RFC 9112 6.3), 0 when absent.</summary>
    public static int ContentLength(string head)
    {
        foreach (string line in head.Split("\r\n"))
        {
            if (line.StartsWith("content-length:", StringComparison.OrdinalIgnoreCase))
                return int.Parse(line.AsSpan(15).Trim(), NumberStyles.None, CultureInfo.InvariantCulture);
        }
        return 0;
    }
}
