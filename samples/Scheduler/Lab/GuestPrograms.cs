using System.Diagnostics;

namespace Netcore.Scheduler.Lab;

/// <summary>
/// Guest functions for the lab and the tests, compiled at run time with gcc into flat x86-64 images
/// for a Netcore.Vm sandbox (<c>.text</c> at 0x201000, entry first; the options of
/// tests/Netcore.Vm.Tests SandboxTests). Each is <c>u64 entry(const u8 *in, u64 len, u8 *out, u64 cap)</c>;
/// host call 1 (<c>out 0xE0</c> with EAX=1, RDI=pointer, RSI=length) appends bytes to the job output.
/// </summary>
internal static class GuestPrograms
{
    private const string Prelude = """
        typedef unsigned long u64;
        typedef unsigned int u32;
        static inline u64 hostcall(u64 n, u64 a0, u64 a1) {
            u64 r;
            __asm__ volatile("outl %%eax, $0xe0" : "=a"(r) : "a"(n), "D"(a0), "S"(a1) : "memory");
            return r;
        }
        #define ENTRY __attribute__((section(".text.entry"))) u64 entry(const unsigned char *in, u64 len, unsigned char *out, u64 cap)

        """;

    /// <summary>The programs by name.</summary>
    public static readonly IReadOnlyDictionary<string, string> Sources = new Dictionary<string, string>
    {
        // FNV-1a 64 over the input after a 4-byte round count (repeated that many times), so the cost is
        // adjustable; writes the hash (8 bytes, little endian) as output and returns it.
        ["checksum"] = """
            ENTRY {
                u64 rounds = 1;
                if (len >= 4) { rounds = in[0] | (in[1] << 8) | (in[2] << 16) | ((u64)in[3] << 24); in += 4; len -= 4; }
                u64 h = 0xcbf29ce484222325UL;
                for (u64 r = 0; r < rounds; r++)
                    for (u64 i = 0; i < len; i++) { h ^= in[i]; h *= 0x100000001b3UL; }
                for (int i = 0; i < 8; i++) out[i] = (unsigned char)(h >> (8 * i));
                hostcall(1, (u64)out, 8);
                return h;
            }
            """,
        // Never returns: the job's timeout stops it.
        ["spinner"] = """
            ENTRY {
                volatile u64 n = 0;
                for (;;) n++;
                return 0;
            }
            """,
        // Writes to 0x1000, in the supervisor-only first 2 MiB: a page fault at CPL3 with no IDT.
        ["fault"] = """
            ENTRY {
                *(volatile unsigned char *)0x1000UL = 1;
                return 1;
            }
            """,
        // Touches every page of its scratch (output) buffer, i.e. the job's memoryMb, and returns the page count.
        ["alloc"] = """
            ENTRY {
                u64 pages = 0;
                for (u64 i = 0; i < cap; i += 4096) { out[i] = (unsigned char)i | 1; pages++; }
                hostcall(1, (u64)&pages, 8);
                return pages;
            }
            """,
    };

    /// <summary>FNV-1a 64 as the checksum program computes it (rounds from the first 4 bytes).</summary>
    public static ulong Checksum(ReadOnlySpan<byte> input)
    {
        ulong rounds = 1;
        if (input.Length >= 4)
        {
            rounds = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(input);
            input = input[4..];
        }
        ulong h = 0xcbf29ce484222325UL;
        for (ulong r = 0; r < rounds; r++)
        {
            foreach (byte b in input)
                h = (h ^ b) * 0x100000001b3UL;
        }
        return h;
    }

    /// <summary>Input for the checksum program: a round count, then the data.</summary>
    public static byte[] ChecksumInput(uint rounds, ReadOnlySpan<byte> data)
    {
        byte[] b = new byte[4 + data.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b, rounds);
        data.CopyTo(b.AsSpan(4));
        return b;
    }

    /// <summary>Compiles every program with gcc and objcopy in a temporary directory; returns the images.</summary>
    public static Dictionary<string, byte[]> Compile()
    {
        string dir = Directory.CreateTempSubdirectory("nc-sched-guest-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "link.ld"), """
                SECTIONS { . = 0x201000; .text : { *(.text.entry) *(.text*) *(.rodata*) *(.data*) *(.bss*) }
                           /DISCARD/ : { *(.comment) *(.note*) *(.eh_frame*) } }
                """);
            var images = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            foreach (var (name, body) in Sources)
            {
                File.WriteAllText(Path.Combine(dir, name + ".c"), Prelude + body);
                Run(dir, "gcc", "-O2", "-ffreestanding", "-fno-pic", "-fno-pie", "-no-pie", "-nostdlib", "-fno-stack-protector", "-mno-red-zone",
                    "-fcf-protection=none", "-static", "-Wl,-T,link.ld", "-Wl,-e,entry", "-o", name + ".elf", name + ".c");
                Run(dir, "objcopy", "-O", "binary", "-j", ".text", name + ".elf", name + ".bin");
                images[name] = File.ReadAllBytes(Path.Combine(dir, name + ".bin"));
            }
            return images;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void Run(string dir, string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file, args) { WorkingDirectory = dir, RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"{file} did not start");
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({p.ExitCode}): {err}");
    }
}
