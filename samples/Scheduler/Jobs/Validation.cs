using System.Text.Json;
using System.Text.RegularExpressions;
using Netcore.Vm.Sandboxing;

namespace Netcore.Scheduler.Jobs;

/// <summary>Turns API bodies into specs; every rule names its field and says what is allowed.</summary>
internal static partial class Validation
{
    public const int MaxPriority = 9;
    public const int MaxTimeoutMs = 600_000;
    public const int MaxFunctionMemoryMb = 1024;
    public const int MinLinuxMemoryMb = 64, MaxLinuxMemoryMb = 4096;

    // Linux x86 COMMAND_LINE_SIZE (arch/x86/include/asm/setup.h), what boot.rst's cmdline_size reports for 2.06+.
    public const int MaxCommandLine = 2048;

    [GeneratedRegex("^[a-z0-9][a-z0-9_-]{0,31}$", RegexOptions.CultureInvariant)]
    private static partial Regex TenantName();

    /// <summary>A tenant name: 1-32 of a-z 0-9 _ -, starting with a letter or digit (it is also a cgroup directory name).</summary>
    public static string Tenant(string? name)
    {
        if (name is null || !TenantName().IsMatch(name))
            throw Invalid("tenant", $"tenant: '{name}' is not a tenant name (1-32 characters of a-z, 0-9, '_' and '-', starting with a letter or digit)");
        return name;
    }

    /// <summary>PUT /api/v1/tenants/NAME: fields not given keep their current value (defaults for a new tenant).</summary>
    public static TenantSpec TenantSpec(string name, JsonElement body, TenantSpec? current)
    {
        Tenant(name);
        var spec = current ?? new TenantSpec(name, 1, null, null, 1);
        if (body.ValueKind == JsonValueKind.Undefined)
            return spec;
        if (body.ValueKind != JsonValueKind.Object)
            throw Invalid("body", "body: a JSON object is expected");
        foreach (var p in body.EnumerateObject())
        {
            switch (p.Name)
            {
                case "weight":
                    spec = spec with { Weight = Int(p.Value, "weight", 1, 1000) };
                    break;
                case "cpuLimit":
                    // sched-bwc.rst: quota at least 1 ms per period (1 % of the 100 ms period used here).
                    spec = spec with { CpuLimit = p.Value.ValueKind == JsonValueKind.Null ? null : Double(p.Value, "cpuLimit", 0.01, Environment.ProcessorCount) };
                    break;
                case "memoryLimitMb":
                    spec = spec with { MemoryLimitBytes = p.Value.ValueKind == JsonValueKind.Null ? null : (long)Int(p.Value, "memoryLimitMb", 32, 1 << 20) << 20 };
                    break;
                case "maxWorkers":
                    spec = spec with { MaxWorkers = Int(p.Value, "maxWorkers", 1, 64) };
                    break;
                default:
                    throw Invalid(p.Name, $"{p.Name}: unknown field (weight, cpuLimit, memoryLimitMb, maxWorkers)");
            }
        }
        return spec;
    }

    /// <summary>A query flag: absent is false; "true" or "false" otherwise.</summary>
    public static bool Flag(string? value, string field) => value switch
    {
        null or "false" => false,
        "true" => true,
        _ => throw Invalid(field, $"{field}: '{value}' is not true or false"),
    };

    /// <summary>POST /api/v1/maintenance/prune: no body applies the configured retention; given fields override it for this run.</summary>
    public static PruneRequest? Prune(JsonElement body)
    {
        if (body.ValueKind == JsonValueKind.Undefined)
            return null;
        if (body.ValueKind != JsonValueKind.Object)
            throw Invalid("body", "body: a JSON object is expected");
        var r = new PruneRequest(null, null, null);
        foreach (var p in body.EnumerateObject())
        {
            r = p.Name switch
            {
                "jobsOlderThanSeconds" => r with { JobsOlderThan = TimeSpan.FromSeconds(Int(p.Value, p.Name, 0, MaxRetentionSeconds)) },
                "keepJobs" => r with { KeepJobs = Int(p.Value, p.Name, 0, int.MaxValue) },
                "imagesUnusedForSeconds" => r with { ImagesUnusedFor = TimeSpan.FromSeconds(Int(p.Value, p.Name, 0, MaxRetentionSeconds)) },
                _ => throw Invalid(p.Name, $"{p.Name}: unknown field (jobsOlderThanSeconds, keepJobs, imagesUnusedForSeconds)"),
            };
        }
        return r;
    }

    /// <summary>Ten years: the longest retention a prune request may name.</summary>
    public const int MaxRetentionSeconds = 10 * 366 * 86400;

    /// <summary>POST /api/v1/jobs.</summary>
    public static JobSpec Job(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object)
            throw Invalid("body", "body: a JSON object is expected");
        string? tenant = null, kind = null, imageB64 = null, imagePath = null, inputB64 = null, kernel = null, initrd = null, cmdline = null;
        int priority = 0, timeoutMs = 5000, vcpus = 1;
        int? memoryMb = null;
        foreach (var p in body.EnumerateObject())
        {
            switch (p.Name)
            {
                case "tenant": tenant = Str(p.Value, "tenant"); break;
                case "kind": kind = Str(p.Value, "kind"); break;
                case "image": imageB64 = Str(p.Value, "image"); break;
                case "imagePath": imagePath = Str(p.Value, "imagePath"); break;
                case "input": inputB64 = Str(p.Value, "input"); break;
                case "priority": priority = Int(p.Value, "priority", 0, MaxPriority); break;
                case "timeoutMs": timeoutMs = Int(p.Value, "timeoutMs", 1, MaxTimeoutMs); break;
                case "memoryMb": memoryMb = Int(p.Value, "memoryMb", 1, MaxLinuxMemoryMb); break;
                case "kernelPath": kernel = Str(p.Value, "kernelPath"); break;
                case "initrdPath": initrd = Str(p.Value, "initrdPath"); break;
                case "cmdline": cmdline = Str(p.Value, "cmdline"); break;
                case "vcpus": vcpus = Int(p.Value, "vcpus", 1, 8); break;
                default:
                    throw Invalid(p.Name, $"{p.Name}: unknown field");
            }
        }
        if (tenant is null)
            throw Invalid("tenant", "tenant: required");
        Tenant(tenant);
        switch (kind ?? "function")
        {
            case "function":
            {
                foreach (var (f, v) in new[] { ("kernelPath", kernel), ("initrdPath", initrd), ("cmdline", cmdline) })
                {
                    if (v is not null)
                        throw Invalid(f, $"{f}: only for kind 'linux'");
                }
                byte[] image = (imageB64, imagePath) switch
                {
                    (not null, not null) => throw Invalid("image", "image: give either image (base64) or imagePath, not both"),
                    (not null, null) => Base64(imageB64, "image"),
                    (null, not null) => ReadImage(imagePath),
                    _ => throw Invalid("image", "image: required (base64 of the x86-64 code, loaded at 0x201000) or imagePath"),
                };
                if (image.Length is 0 or > Sandbox.MaxProgramSize)
                    throw Invalid("image", $"image: {image.Length} bytes; a program is 1 to {Sandbox.MaxProgramSize} bytes (it is loaded at 0x201000 below the stack at 0x400000)");
                byte[] input = inputB64 is null ? [] : Base64(inputB64, "input");
                if (input.Length > JobSpec.MaxInputBytes)
                    throw Invalid("input", $"input: {input.Length} bytes; at most {JobSpec.MaxInputBytes}");
                int mem = memoryMb ?? 1;
                if (mem > MaxFunctionMemoryMb)
                    throw Invalid("memoryMb", $"memoryMb: {mem}; a function's scratch memory is 1 to {MaxFunctionMemoryMb} MiB");
                if (vcpus != 1)
                    throw Invalid("vcpus", "vcpus: a sandboxed function has exactly one vCPU");
                return new JobSpec(tenant, JobKind.Function, priority, image, input, timeoutMs, mem, null);
            }
            case "linux":
            {
                if (imageB64 is not null || imagePath is not null || inputB64 is not null)
                    throw Invalid(imageB64 is not null ? "image" : imagePath is not null ? "imagePath" : "input", "image, imagePath, input: only for kind 'function'");
                if (kernel is null)
                    throw Invalid("kernelPath", "kernelPath: required for kind 'linux' (a bzImage)");
                AbsoluteFile(kernel, "kernelPath");
                if (initrd is not null)
                    AbsoluteFile(initrd, "initrdPath");
                cmdline ??= "console=ttyS0 reboot=k panic=1 pci=off";
                if (cmdline.Length >= MaxCommandLine || cmdline.Any(c => c < 0x20 || c > 0x7E))
                    throw Invalid("cmdline", $"cmdline: printable ASCII, shorter than {MaxCommandLine} characters (COMMAND_LINE_SIZE)");
                int mem = memoryMb ?? 256;
                if (mem < MinLinuxMemoryMb)
                    throw Invalid("memoryMb", $"memoryMb: {mem}; a microVM gets {MinLinuxMemoryMb} to {MaxLinuxMemoryMb} MiB");
                return new JobSpec(tenant, JobKind.Linux, priority, null, [], timeoutMs, mem, new LinuxSpec(kernel, initrd, cmdline, vcpus));
            }
            default:
                throw Invalid("kind", $"kind: '{kind}' is not 'function' or 'linux'");
        }
    }

    private static byte[] ReadImage(string path)
    {
        AbsoluteFile(path, "imagePath");
        var info = new FileInfo(path);
        if (info.Length > Sandbox.MaxProgramSize)
            throw Invalid("imagePath", $"imagePath: {info.Length} bytes; a program is at most {Sandbox.MaxProgramSize} bytes");
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Invalid("imagePath", $"imagePath: {path} cannot be read ({e.Message})");
        }
    }

    private static void AbsoluteFile(string path, string field)
    {
        if (!Path.IsPathFullyQualified(path))
            throw Invalid(field, $"{field}: '{path}' is not an absolute path");
        if (!File.Exists(path))
            throw Invalid(field, $"{field}: {path} does not exist or is not a file");
    }

    private static byte[] Base64(string s, string field)
    {
        try
        {
            return Convert.FromBase64String(s);
        }
        catch (FormatException)
        {
            throw Invalid(field, $"{field}: not valid base64 (RFC 4648 section 4)");
        }
    }

    private static string Str(JsonElement v, string field) =>
        v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Invalid(field, $"{field}: a string is expected");

    private static int Int(JsonElement v, string field, int min, int max)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i))
            throw Invalid(field, $"{field}: an integer from {min} to {max} is expected");
        if (i < min || i > max)
            throw Invalid(field, $"{field}: {i} is outside {min}-{max}");
        return i;
    }

    private static double Double(JsonElement v, string field, double min, double max)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
            throw Invalid(field, $"{field}: a number from {min} to {max} is expected");
        if (d < min || d > max)
            throw Invalid(field, $"{field}: {d} is outside {min}-{max}");
        return d;
    }

    public static RequestException Invalid(string field, string message) => new(RequestErrorKind.Invalid, field, message);
}
