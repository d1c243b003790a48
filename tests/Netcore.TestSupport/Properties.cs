using FsCheck;
using FsCheck.Fluent;
using Microsoft.FSharp.Core;

namespace Netcore.TestSupport;

/// <summary>
/// Seeded FsCheck runs for xunit (FsCheck.Xunit is not available here). A property runs with a
/// fixed seed so every run sees the same cases; a failure throws with the seed and the shrunk
/// counterexample in the message, so it can be replayed.
/// </summary>
public static class Properties
{
    /// <summary>Seed used unless a test picks its own.</summary>
    public const ulong DefaultSeed = 0x4E6574636F7265UL; // "Netcore"

    /// <summary>Gamma of the split-mix generator (must be odd).</summary>
    public const ulong Gamma = 0x9E3779B97F4A7C15UL;

    /// <summary>The FsCheck configuration used by <see cref="Check{T}(Arbitrary{T}, Func{T, bool}, int, ulong)"/>.</summary>
    public static Config Config(int maxTest, ulong seed) =>
        FsCheck.Config.QuickThrowOnFailure
            .WithMaxTest(maxTest)
            .WithQuietOnSuccess(true)
            .WithReplay(FSharpOption<Replay>.Some(new Replay(new Rnd(seed, Gamma), FSharpOption<int>.None)));

    /// <summary>Checks that <paramref name="property"/> holds for <paramref name="maxTest"/> generated values.</summary>
    public static void Check<T>(Arbitrary<T> arbitrary, Func<T, bool> property, int maxTest = 1000, ulong seed = DefaultSeed) =>
        Run(Prop.ForAll(arbitrary, property), maxTest, seed);

    /// <summary>Checks an action that throws (e.g. an xunit assertion) for a counterexample.</summary>
    public static void Check<T>(Arbitrary<T> arbitrary, Action<T> property, int maxTest = 1000, ulong seed = DefaultSeed) =>
        Run(Prop.ForAll(arbitrary, property), maxTest, seed);

    /// <summary>Checks a property over a generator.</summary>
    public static void Check<T>(Gen<T> generator, Func<T, bool> property, int maxTest = 1000, ulong seed = DefaultSeed) =>
        Check(generator.ToArbitrary(), property, maxTest, seed);

    /// <summary>Checks an action over a generator.</summary>
    public static void Check<T>(Gen<T> generator, Action<T> property, int maxTest = 1000, ulong seed = DefaultSeed) =>
        Check(generator.ToArbitrary(), property, maxTest, seed);

    private static void Run(Property property, int maxTest, ulong seed)
    {
        try
        {
            FsCheck.Check.One(Config(maxTest, seed), property);
        }
        catch (Exception e) when (e is not PropertyFailedException)
        {
            throw new PropertyFailedException($"Property failed (seed 0x{seed:X}, gamma 0x{Gamma:X}, {maxTest} cases). {e.Message}", e);
        }
    }

    /// <summary>Random byte arrays up to <paramref name="maxLength"/> bytes.</summary>
    public static Gen<byte[]> Bytes(int maxLength) =>
        Gen.Choose(0, maxLength).SelectMany(n => Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b), n));

    /// <summary>Mutations of a valid input: flipped bytes, truncations and random insertions.</summary>
    public static Gen<byte[]> Mutations(byte[] valid)
    {
        ArgumentNullException.ThrowIfNull(valid);
        Gen<byte[]> flip = Gen.Choose(1, 8).SelectMany(k => Gen.ArrayOf(Gen.Zip(Gen.Choose(0, Math.Max(0, valid.Length - 1)), Gen.Choose(0, 255)), k))
            .Select(edits =>
            {
                byte[] copy = (byte[])valid.Clone();
                if (copy.Length > 0)
                    foreach (var (pos, val) in edits) copy[pos] = (byte)val;
                return copy;
            });
        Gen<byte[]> truncate = Gen.Choose(0, valid.Length).Select(n => valid[..n]);
        Gen<byte[]> extend = Bytes(64).Select(extra => valid.Concat(extra).ToArray());
        return Gen.OneOf(flip, truncate, extend);
    }
}

/// <summary>A property did not hold; the message carries the seed and the shrunk counterexample.</summary>
public sealed class PropertyFailedException : Exception
{
    /// <summary>Creates the exception.</summary>
    public PropertyFailedException(string message, Exception inner) : base(message, inner) { }
}
