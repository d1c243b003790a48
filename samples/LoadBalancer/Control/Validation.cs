using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Netcore.LoadBalancer.DataPlane;

namespace Netcore.LoadBalancer.Control;

/// <summary>
/// Turns API request bodies into specs, naming the field at fault in every refusal
/// (<see cref="ConfigException"/> with <see cref="ConfigErrorKind.Invalid"/> becomes a 400).
/// </summary>
internal static class Validation
{
    /// <summary>Largest backend weight (the Maglev builder's credit arithmetic stays in range).</summary>
    public const int MaxWeight = 65535;

    /// <summary>Default GUE destination port (the port Linux fou/gue examples use).</summary>
    public const ushort DefaultGuePort = 6080;

    /// <summary>Service names: 1-64 of [A-Za-z0-9._-], so they fit a URL path segment and a metric label unescaped.</summary>
    public static string ServiceName(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            throw ConfigException.Invalid("name", "a service name is 1-64 characters of A-Z a-z 0-9 . _ -");
        return name;
    }

    /// <summary>A backend address from the URL: a unicast IPv4 or IPv6 address.</summary>
    public static IPAddress BackendAddress(string? text)
    {
        if (!IPAddress.TryParse(text, out var a) || a.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
            throw ConfigException.Invalid("address", $"'{text}' is not an IPv4 or IPv6 address");
        a = Unmap(a);
        if (IsUnusable(a))
            throw ConfigException.Invalid("address", $"{a} is not a unicast address");
        return a;
    }

    /// <summary>Parses a PUT /api/v1/services/{name} body.</summary>
    public static ServiceSpec Service(string name, JsonElement body)
    {
        ServiceName(name);
        if (body.ValueKind != JsonValueKind.Object)
            throw ConfigException.Invalid("body", "expected a JSON object");
        string vipText = RequiredString(body, "vip");
        if (!IPAddress.TryParse(vipText, out var vip) || vip.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
            throw ConfigException.Invalid("vip", $"'{vipText}' is not an IPv4 or IPv6 address");
        vip = Unmap(vip);
        if (IsUnusable(vip))
            throw ConfigException.Invalid("vip", $"{vip} is not a unicast address");
        int port = RequiredInt(body, "port");
        // A transport port is 1-65535; 0 is reserved (RFC 6335 6).
        if (port is < 1 or > 65535)
            throw ConfigException.Invalid("port", "must be 1-65535");
        string protoText = OptionalString(body, "protocol") ?? "tcp";
        var proto = protoText switch
        {
            "tcp" => ProtocolType.Tcp,
            "udp" => ProtocolType.Udp,
            _ => throw ConfigException.Invalid("protocol", $"'{protoText}' is not tcp or udp"),
        };
        string encapText = OptionalString(body, "encap") ?? "gue";
        var encap = encapText switch
        {
            "gue" => Encapsulation.Gue,
            "ipip" => Encapsulation.Ipip,
            _ => throw ConfigException.Invalid("encap", $"'{encapText}' is not gue or ipip"),
        };
        int guePort = OptionalInt(body, "guePort") ?? DefaultGuePort;
        if (guePort is < 1 or > 65535)
            throw ConfigException.Invalid("guePort", "must be 1-65535");
        HealthCheckSpec? hc = null;
        if (body.TryGetProperty("healthCheck", out var h) && h.ValueKind != JsonValueKind.Null)
            hc = HealthCheck(h, port);
        return new ServiceSpec(name, vip, (ushort)port, proto, encap, (ushort)guePort, hc);
    }

    /// <summary>Parses the healthCheck object.</summary>
    public static HealthCheckSpec HealthCheck(JsonElement h, int servicePort)
    {
        if (h.ValueKind != JsonValueKind.Object)
            throw ConfigException.Invalid("healthCheck", "expected a JSON object");
        string type = OptionalString(h, "type", "healthCheck.type") ?? "tcp";
        var kind = type switch
        {
            "tcp" => HealthCheckKind.Tcp,
            "http" => HealthCheckKind.Http,
            _ => throw ConfigException.Invalid("healthCheck.type", $"'{type}' is not tcp or http"),
        };
        int port = OptionalInt(h, "port", "healthCheck.port") ?? servicePort;
        if (port is < 1 or > 65535)
            throw ConfigException.Invalid("healthCheck.port", "must be 1-65535");
        string path = OptionalString(h, "path", "healthCheck.path") ?? "/";
        // RFC 9112 3.2.1 origin-form: an absolute path, no spaces or controls.
        if (!path.StartsWith('/') || path.Any(c => c <= ' ' || c == 0x7f))
            throw ConfigException.Invalid("healthCheck.path", "must be an absolute path starting with '/' without spaces");
        int interval = OptionalInt(h, "intervalMs", "healthCheck.intervalMs") ?? 1000;
        if (interval is < 50 or > 3_600_000)
            throw ConfigException.Invalid("healthCheck.intervalMs", "must be 50-3600000");
        int timeout = OptionalInt(h, "timeoutMs", "healthCheck.timeoutMs") ?? Math.Min(500, interval);
        if (timeout < 10 || timeout > interval)
            throw ConfigException.Invalid("healthCheck.timeoutMs", "must be at least 10 and at most intervalMs");
        int rise = OptionalInt(h, "rise", "healthCheck.rise") ?? 2;
        if (rise is < 1 or > 100)
            throw ConfigException.Invalid("healthCheck.rise", "must be 1-100");
        int fall = OptionalInt(h, "fall", "healthCheck.fall") ?? 2;
        if (fall is < 1 or > 100)
            throw ConfigException.Invalid("healthCheck.fall", "must be 1-100");
        return new HealthCheckSpec(kind, port, path, interval, timeout, rise, fall);
    }

    /// <summary>Parses a PUT backend body: {"weight": N}, weight 0-65535 (default 100).</summary>
    public static int BackendWeight(JsonElement body)
    {
        if (body.ValueKind == JsonValueKind.Undefined || body.ValueKind == JsonValueKind.Null)
            return 100;
        if (body.ValueKind != JsonValueKind.Object)
            throw ConfigException.Invalid("body", "expected a JSON object");
        int w = OptionalInt(body, "weight") ?? 100;
        if (w is < 0 or > MaxWeight)
            throw ConfigException.Invalid("weight", $"must be 0-{MaxWeight}");
        return w;
    }

    private static IPAddress Unmap(IPAddress a) => a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a;

    private static bool IsUnusable(IPAddress a)
    {
        if (a.Equals(IPAddress.Any) || a.Equals(IPAddress.IPv6Any) || a.Equals(IPAddress.Broadcast))
            return true;
        Span<byte> b = stackalloc byte[16];
        a.TryWriteBytes(b, out int n);
        // RFC 5771 (224/4 multicast) and RFC 4291 2.7 (ff00::/8).
        return n == 4 ? b[0] >= 224 : b[0] == 0xff;
    }

    private static string RequiredString(JsonElement o, string name) =>
        OptionalString(o, name) ?? throw ConfigException.Invalid(name, "is required");

    private static int RequiredInt(JsonElement o, string name) =>
        OptionalInt(o, name) ?? throw ConfigException.Invalid(name, "is required");

    private static string? OptionalString(JsonElement o, string name, string? field = null)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
            return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw ConfigException.Invalid(field ?? name, "must be a string");
    }

    private static int? OptionalInt(JsonElement o, string name, string? field = null)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
            return null;
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw ConfigException.Invalid(field ?? name, "must be an integer");
    }
}
