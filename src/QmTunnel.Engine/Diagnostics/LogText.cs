using System.Globalization;
using System.Text;

namespace QmTunnel.Engine.Diagnostics;

/// <summary>
/// Makes text safe for one log line: a peer chooses user names, server names, reasons and addresses that end up in log
/// messages, and a control character written raw would forge lines (CR, LF), rewrite a terminal (ESC sequences) or hide
/// text (bidirectional overrides). Escaped: C0 controls (\r, \n, \t, others as \xHH), DEL and C1 controls (\xHH), the
/// Unicode line and paragraph separators, bidirectional formatting characters and lone surrogates (\uHHHH). A line
/// longer than the limit is cut, saying how much was left out. It does not escape backslashes (paths stay readable).
/// </summary>
public static class LogText
{
    /// <summary>The longest message a log line carries (characters), before the note of what was cut.</summary>
    public const int MaxLineLength = 4096;

    /// <summary><paramref name="text"/> with every unsafe character escaped, cut at <paramref name="maxLength"/>.</summary>
    public static string Sanitize(string? text, int maxLength = MaxLineLength)
    {
        if (string.IsNullOrEmpty(text))
        {
            return text ?? string.Empty;
        }
        var first = IndexOfUnsafe(text);
        if (first < 0 && text.Length <= maxLength)
        {
            return text;
        }
        var builder = new StringBuilder(Math.Min(text.Length, maxLength) + 16);
        builder.Append(text, 0, Math.Min(first < 0 ? text.Length : first, maxLength));
        var i = builder.Length;
        for (; i < text.Length && builder.Length < maxLength; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                builder.Append(c).Append(text[++i]);
            }
            else if (IsUnsafe(c))
            {
                AppendEscape(builder, c);
            }
            else
            {
                builder.Append(c);
            }
        }
        if (i < text.Length)
        {
            builder.Append(CultureInfo.InvariantCulture, $"... ({text.Length - i} more characters not logged)");
        }
        return builder.ToString();
    }

    private static int IndexOfUnsafe(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (IsUnsafe(c))
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>Controls (C0, DEL, C1), line/paragraph separators, bidirectional formatting, lone surrogates.</summary>
    private static bool IsUnsafe(char c) =>
        c < 0x20 || c is >= '\u007f' and <= '\u009f'
        || c is '\u2028' or '\u2029' or '\u200e' or '\u200f' or '\u061c'
        || c is >= '\u202a' and <= '\u202e' || c is >= '\u2066' and <= '\u2069'
        || char.IsSurrogate(c);

    private static void AppendEscape(StringBuilder builder, char c)
    {
        switch (c)
        {
            case '\r':
                builder.Append("\\r");
                break;
            case '\n':
                builder.Append("\\n");
                break;
            case '\t':
                builder.Append("\\t");
                break;
            default:
                builder.Append(c <= '\u00ff' ? $"\\x{(int)c:X2}" : $"\\u{(int)c:X4}");
                break;
        }
    }
}
