using System.Globalization;
using System.Management.Automation;

namespace QmTunnel.PowerShell;

/// <summary>
/// Put on every TimeSpan parameter: a plain number is seconds (<c>-ConnectTimeout 5</c> is 5 seconds, <c>0.5</c> half
/// a second), as a person means it, instead of PowerShell's own conversion (an integer as ticks: 5 = 500 ns; a numeric
/// string as days). TimeSpan values and time strings (<c>00:00:05</c>, <c>(New-TimeSpan -Minutes 2)</c>) pass
/// unchanged. It does not check the range: each cmdlet does, before -WhatIf, with an error that names the range.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class SecondsTimeSpanAttribute : ArgumentTransformationAttribute
{
    /// <summary>The most seconds a number may give: TimeSpan's own limit, about 29,000 years.</summary>
    private static readonly double MaxSeconds = TimeSpan.MaxValue.TotalSeconds;

    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        var value = inputData is PSObject wrapped ? wrapped.BaseObject : inputData;
        double? seconds = value switch
        {
            byte or sbyte or short or ushort or int or uint or long or ulong => Convert.ToDouble(value, CultureInfo.InvariantCulture),
            float or double or decimal => Convert.ToDouble(value, CultureInfo.InvariantCulture),
            string text when double.TryParse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed) => parsed,
            _ => null,
        };
        if (seconds is not { } s)
        {
            return inputData;
        }
        if (double.IsNaN(s) || Math.Abs(s) >= MaxSeconds)
        {
            throw new ArgumentTransformationMetadataException(
                $"'{value}' seconds is not a time span. Give seconds as a number (5, 0.5) or a time such as 00:00:05.");
        }
        return TimeSpan.FromSeconds(s);
    }
}

/// <summary>The range checks of the TimeSpan parameters, with messages that name the range and its spelling.</summary>
internal static class TimeSpanRange
{
    /// <summary>Null when <paramref name="value"/> is within [<paramref name="min"/>, <paramref name="max"/>], else the problem.</summary>
    public static string? Problem(string parameter, TimeSpan value, TimeSpan min, TimeSpan max) =>
        value < min || value > max
            ? $"-{parameter} {Text(value)} is out of range: give {Text(min)} to {Text(max)} (a number is seconds, e.g. -{parameter} {Example(min, max)})."
            : null;

    /// <summary>A time span as a person reads it: "5 s", "250 ms", "00:10:00".</summary>
    public static string Text(TimeSpan value) =>
        value.Duration() < TimeSpan.FromSeconds(1) && value.Ticks % TimeSpan.TicksPerMillisecond == 0 && value != TimeSpan.Zero
            ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalMilliseconds:0} ms")
            : value.Duration() < TimeSpan.FromMinutes(1) && value.Ticks % TimeSpan.TicksPerSecond == 0
                ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalSeconds:0} s")
                : value.ToString("c", CultureInfo.InvariantCulture);

    private static string Example(TimeSpan min, TimeSpan max)
    {
        var seconds = Math.Clamp(10, Math.Ceiling(min.TotalSeconds), Math.Floor(max.TotalSeconds));
        return seconds.ToString(CultureInfo.InvariantCulture);
    }
}
