using System.Buffers;
using System.Text;

namespace Netcore.LoadBalancer.Maglev;

/// <summary>
/// The two hashes of a backend name that define its Maglev permutation (Eisenbud et al., NSDI
/// 2016, section 3.4: "offset = h1(name) mod M, skip = h2(name) mod (M - 1) + 1").
/// Fixed functions with fixed constants, no per-process randomization (unlike
/// <see cref="string.GetHashCode()"/>): two load-balancer nodes, or two runs, agree.
/// </summary>
/// <remarks>
/// FNV-1a 64 over the UTF-8 bytes of the name, then two different MurmurHash3 64-bit
/// finalizers (fmix64 of the digest plus two distinct odd constants). fmix64 is a bijection with
/// full avalanche, so offset and skip are uniformly spread and unrelated for distinct names.
/// </remarks>
internal static class MaglevHash
{
    private const ulong FnvOffsetBasis = 0xcbf29ce484222325UL;
    private const ulong FnvPrime = 0x100000001b3UL;
    private const ulong OffsetSalt = 0x9E3779B97F4A7C15UL;
    private const ulong SkipSalt = 0xC2B2AE3D27D4EB4FUL;

    /// <summary>FNV-1a 64 of the UTF-8 encoding of <paramref name="name"/>.</summary>
    public static ulong Digest(string name)
    {
        int max = Encoding.UTF8.GetMaxByteCount(name.Length);
        byte[]? rented = null;
        Span<byte> buffer = max <= 512 ? stackalloc byte[512] : (rented = ArrayPool<byte>.Shared.Rent(max));
        try
        {
            int n = Encoding.UTF8.GetBytes(name, buffer);
            ulong h = FnvOffsetBasis;
            foreach (byte b in buffer[..n])
            {
                h ^= b;
                h *= FnvPrime;
            }
            return h;
        }
        finally
        {
            if (rented is not null)
                ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>MurmurHash3 fmix64 finalizer.</summary>
    public static ulong Fmix64(ulong k)
    {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdUL;
        k ^= k >> 33;
        k *= 0xc4ceb9fe1a85ec53UL;
        k ^= k >> 33;
        return k;
    }

    /// <summary>Offset of the permutation in a table of prime size <paramref name="size"/>: h1 mod M.</summary>
    public static int Offset(ulong digest, int size) => (int)(Fmix64(digest + OffsetSalt) % (ulong)size);

    /// <summary>Skip of the permutation: h2 mod (M - 1) + 1, in [1, M - 1], so it is coprime with prime M.</summary>
    public static int Skip(ulong digest, int size) => (int)(Fmix64(digest + SkipSalt) % (ulong)(size - 1)) + 1;
}
