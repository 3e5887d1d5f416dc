// The attnc DSL grammar. C++ is generated from it at build time by `antlr4`
// (never checked in). See docs/dsl.md for the language reference.
//
//   import "causal.attn";
//   mask window(b, h, q, k; const W: i32 = 1024) = k <= q && q - k < W;
//   score softcap(s, b, h, q, k; cap: f32 = 30.0) = cap * tanh(s / cap);
//   kernel local { mask = window(W: 512); score = softcap; dtype = bf16; head_dim = 128; }
//   cache streaming { layout = paged(16); retention = sink(4) + window(1020); storage = int8(per_token); }
grammar AttnDSL;

module : item* EOF ;

item
  : importDecl
  | defDecl
  | kernelDecl
  | cacheDecl
  ;

importDecl : 'import' STRING ';' ;

// Named mask and score definitions. Index arguments come first; parameters
// (runtime tensors and scalars, or `const` specialization constants) follow
// the semicolon.
defDecl : kind=('mask' | 'score') name=IDENT '(' indexArgs=identList? (';' params=paramList)? ')' body ;

identList : IDENT (',' IDENT)* ;
paramList : paramDecl (',' paramDecl)* ;
paramDecl : isConst='const'? name=IDENT ':' type=typeRef ('=' init=expr)? ;
typeRef   : elem=IDENT ('[' dims+=expr (',' dims+=expr)* ']')? ;

body
  : '=' expr ';'
  | '{' letStmt* expr '}'
  ;
letStmt : 'let' name=IDENT '=' expr ';' ;

// An attention kernel: a set of `field = value;` entries (mask, score, scale,
// normalizer, heads, dtype, head_dim, cache).
kernelDecl : 'kernel' name=IDENT ('(' params=paramList? ')')? '{' field* '}' ;
field : name=fieldName '=' value ';' ;
// Field names may reuse the definition keywords (`mask = causal;`).
fieldName : IDENT | 'mask' | 'score' | 'cache' ;
value : expr | '[' expr (',' expr)* ']' ;

// A cache policy, either a record of fields or a per-head assignment chosen
// by a runtime table.
cacheDecl
  : 'cache' name=IDENT '{' field* '}'                                  # cacheRecord
  | 'cache' name=IDENT '=' 'per_head' '(' identList ')' 'by' table=IDENT ';' # cachePerHead
  ;

expr
  : primary                                                 # primaryExpr
  | op=('-' | '!') expr                                     # unaryExpr
  | lhs=expr op=('*' | '/' | '%') rhs=expr                  # binaryExpr
  | lhs=expr op=('+' | '-') rhs=expr                        # binaryExpr
  | lhs=expr op=('<' | '<=' | '>' | '>=') rhs=expr          # binaryExpr
  | lhs=expr op=('==' | '!=') rhs=expr                      # binaryExpr
  | lhs=expr op='&&' rhs=expr                               # binaryExpr
  | lhs=expr op='||' rhs=expr                               # binaryExpr
  | <assoc=right> cond=expr '?' then=expr ':' otherwise=expr # condExpr
  ;

primary
  : INT                                          # intLit
  | FLOAT                                        # floatLit
  | ('true' | 'false')                           # boolLit
  | name=IDENT '(' (callArg (',' callArg)*)? ')' # callExpr
  | name=IDENT '[' expr (',' expr)* ']'          # indexExpr
  | IDENT                                        # nameExpr
  | '(' expr ')'                                 # parenExpr
  ;

// Positional arguments, or `name: value` bindings of the callee's parameters.
callArg : (name=IDENT ':')? expr ;

INT    : [0-9]+ ;
FLOAT  : [0-9]+ '.' [0-9]* ([eE] [+-]? [0-9]+)?
       | [0-9]+ [eE] [+-]? [0-9]+
       | '.' [0-9]+ ([eE] [+-]? [0-9]+)? ;
STRING : '"' ~["\r\n]* '"' ;
IDENT  : [a-zA-Z_] [a-zA-Z_0-9]* ;

LINE_COMMENT  : '//' ~[\r\n]* -> skip ;
BLOCK_COMMENT : '/*' .*? '*/' -> skip ;
WS            : [ \t\r\n]+ -> skip ;
// Any other character becomes a token the parser rejects with a diagnostic,
// instead of the lexer printing to stderr.
ERROR_CHAR : . ;
