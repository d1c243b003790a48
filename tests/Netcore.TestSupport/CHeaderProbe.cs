using System.Globalization;
using System.Text;

namespace Netcore.TestSupport;

/// <summary>
/// Asks the machine's C compiler for the value of integer expressions (sizeof, offsetof,
/// constants) under real system headers, so interop structs and constants can be checked
/// against the ABI instead of against our memory of it.
/// </summary>
public static class CHeaderProbe
{
    /// <summary>Null when gcc (or cc) is available; otherwise the reason.</summary>
    public static string? Available() => Shell.Which("gcc") is null && Shell.Which("cc") is null ? "needs a C compiler (gcc)" : null;

    /// <summary>
    /// Compiles and runs a program that includes <paramref name="headers"/> and prints each
    /// expression as a signed 64-bit integer; returns the values keyed by expression.
    /// </summary>
    public static IReadOnlyDictionary<string, long> Evaluate(IEnumerable<string> headers, IEnumerable<string> expressions, string? extraCompilerArgs = null)
    {
        var exprs = expressions.Distinct().ToList();
        var src = new StringBuilder();
        src.AppendLine("#define _GNU_SOURCE");
        src.AppendLine("#include <stdio.h>");
        src.AppendLine("#include <stddef.h>");
        foreach (string h in headers)
            src.AppendLine(CultureInfo.InvariantCulture, $"#include <{h}>");
        src.AppendLine("int main(void) {");
        foreach (string e in exprs)
            src.AppendLine(CultureInfo.InvariantCulture, $"  printf(\"%lld\\n\", (long long)({e}));");
        src.AppendLine("  return 0; }");
        string dir = Directory.CreateTempSubdirectory("nc-cprobe-").FullName;
        try
        {
            string c = Path.Combine(dir, "probe.c");
            string exe = Path.Combine(dir, "probe");
            File.WriteAllText(c, src.ToString());
            string cc = Shell.Which("gcc") ?? "cc";
            Shell.Sh($"{cc} -O0 -w {extraCompilerArgs} -o {exe} {c}").EnsureSuccess($"compiling header probe:\n{src}");
            string[] lines = Shell.Run(exe, []).EnsureSuccess("header probe").StdOut
                .Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var result = new Dictionary<string, long>();
            for (int i = 0; i < exprs.Count; i++)
                result[exprs[i]] = long.Parse(lines[i], CultureInfo.InvariantCulture);
            return result;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>
/// Describes one interop struct for a layout check: the C type, the .NET type, and pairs of
/// (C field, .NET field) whose offsets must agree.
/// </summary>
/// <param name="CType">C type name, e.g. "struct sockaddr_nl".</param>
/// <param name="ManagedType">The mirroring .NET struct.</param>
/// <param name="Fields">C field name and .NET field name pairs.</param>
public sealed record StructLayoutSpec(string CType, Type ManagedType, params (string CField, string ManagedField)[] Fields);

/// <summary>Checks a set of <see cref="StructLayoutSpec"/> against the C headers.</summary>
public static class StructLayoutCheck
{
    /// <summary>Returns a list of mismatches (empty when every size and offset agrees).</summary>
    public static IReadOnlyList<string> Compare(IEnumerable<string> headers, IEnumerable<StructLayoutSpec> specs, string? extraCompilerArgs = null)
    {
        var list = specs.ToList();
        var exprs = new List<string>();
        foreach (var s in list)
        {
            exprs.Add($"sizeof({s.CType})");
            foreach (var (cf, _) in s.Fields)
                exprs.Add($"offsetof({s.CType}, {cf})");
        }
        var values = CHeaderProbe.Evaluate(headers, exprs, extraCompilerArgs);
        var errors = new List<string>();
        foreach (var s in list)
        {
            long cSize = values[$"sizeof({s.CType})"];
            int mSize = System.Runtime.InteropServices.Marshal.SizeOf(s.ManagedType);
            if (cSize != mSize)
                errors.Add($"{s.CType}: sizeof is {cSize} in C, {mSize} in {s.ManagedType.Name}");
            foreach (var (cf, mf) in s.Fields)
            {
                long cOff = values[$"offsetof({s.CType}, {cf})"];
                long mOff = System.Runtime.InteropServices.Marshal.OffsetOf(s.ManagedType, mf).ToInt64();
                if (cOff != mOff)
                    errors.Add($"{s.CType}.{cf}: offset {cOff} in C, {mOff} in {s.ManagedType.Name}.{mf}");
            }
        }
        return errors;
    }
}
