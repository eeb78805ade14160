namespace ActorRing.Templating.Jinja;

// The syntax tree. Every node keeps where it started so render errors can point at it.

internal abstract record Node(Position At);
internal sealed record TextNode(Position At, string Text) : Node(At);
internal sealed record OutputNode(Position At, Expr Value) : Node(At);
internal sealed record IfNode(Position At, IReadOnlyList<(Expr Condition, IReadOnlyList<Node> Body)> Branches, IReadOnlyList<Node> Else) : Node(At);
/// <param name="Filter">The optional <c>if</c> clause: items failing it are skipped and not counted by <c>loop</c>.</param>
internal sealed record ForNode(Position At, IReadOnlyList<string> Targets, Expr Iterable, Expr? Filter, IReadOnlyList<Node> Body, IReadOnlyList<Node> Else) : Node(At);
/// <summary><c>{% set a = x %}</c>, <c>{% set a, b = x %}</c>, <c>{% set ns.attr = x %}</c>, or a block set (Value null, Body set).</summary>
internal sealed record SetNode(Position At, IReadOnlyList<string> Targets, string? Attribute, Expr? Value, IReadOnlyList<Node>? Body) : Node(At);
internal sealed record MacroNode(Position At, string Name, IReadOnlyList<(string Name, Expr? Default)> Parameters, IReadOnlyList<Node> Body) : Node(At);
/// <summary>A block whose body renders unchanged: HF's <c>{% generation %}</c> marker for assistant masks.</summary>
internal sealed record BlockNode(Position At, IReadOnlyList<Node> Body) : Node(At);
internal sealed record BreakNode(Position At) : Node(At);
internal sealed record ContinueNode(Position At) : Node(At);

internal abstract record Expr(Position At);
internal sealed record LiteralExpr(Position At, object? Value) : Expr(At);
internal sealed record NameExpr(Position At, string Name) : Expr(At);
/// <param name="IsTuple">Written as <c>(a, b)</c> or <c>a, b</c>: a Python tuple, which prints with parentheses.</param>
internal sealed record ListExpr(Position At, IReadOnlyList<Expr> Items, bool IsTuple = false) : Expr(At);
internal sealed record DictExpr(Position At, IReadOnlyList<(Expr Key, Expr Value)> Items) : Expr(At);
internal sealed record AttributeExpr(Position At, Expr Target, string Name) : Expr(At);
internal sealed record IndexExpr(Position At, Expr Target, Expr Index) : Expr(At);
internal sealed record SliceExpr(Position At, Expr Target, Expr? Start, Expr? Stop, Expr? Step) : Expr(At);
internal sealed record CallExpr(Position At, Expr Callee, Arguments Arguments) : Expr(At);
internal sealed record FilterExpr(Position At, Expr Value, string Name, Arguments Arguments) : Expr(At);
internal sealed record TestExpr(Position At, Expr Value, string Name, bool Negated, Arguments Arguments) : Expr(At);
internal sealed record UnaryExpr(Position At, string Operator, Expr Operand) : Expr(At);
/// <summary>Arithmetic, <c>~</c>, <c>and</c>, <c>or</c>.</summary>
internal sealed record BinaryExpr(Position At, string Operator, Expr Left, Expr Right) : Expr(At);
/// <summary>A chain <c>a &lt; b &lt;= c</c>, including <c>in</c> and <c>not in</c>.</summary>
internal sealed record CompareExpr(Position At, Expr First, IReadOnlyList<(string Operator, Expr Operand)> Rest) : Expr(At);
internal sealed record ConditionalExpr(Position At, Expr Condition, Expr Then, Expr? Else) : Expr(At);

internal sealed record Arguments(IReadOnlyList<Expr> Positional, IReadOnlyList<(string Name, Expr Value)> Named)
{
    public static readonly Arguments None = new([], []);
}
