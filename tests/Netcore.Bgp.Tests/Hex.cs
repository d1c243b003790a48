namespace Netcore.Bgp.Tests;

internal static class Hex
{
    public static byte[] Parse(string hex) => Convert.FromHexString(new string(hex.Where(Uri.IsHexDigit).ToArray()));

    public static string Format(ReadOnlySpan<byte> b) => Convert.ToHexString(b).ToLowerInvariant();
}
