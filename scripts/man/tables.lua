-- A pandoc filter for the man pages: each table becomes a definition list (a man page's usual form, and one that
-- fits 80 columns): the row's first cell is the term; the other cells follow as "Header: cell" paragraphs, but for
-- the last column (the meaning), which follows as it is.
local stringify = pandoc.utils.stringify

function Table(tbl)
  local headers = {}
  if #tbl.head.rows > 0 then
    for i, cell in ipairs(tbl.head.rows[1].cells) do headers[i] = stringify(cell.contents) end
  end
  local items = {}
  for _, body in ipairs(tbl.bodies) do
    for _, row in ipairs(body.body) do
      local term = pandoc.utils.blocks_to_inlines(row.cells[1].contents)
      local definition = {}
      for i = 2, #row.cells do
        local inlines = pandoc.utils.blocks_to_inlines(row.cells[i].contents)
        if #inlines > 0 then
          if i < #row.cells and headers[i] and headers[i] ~= "" then
            table.insert(inlines, 1, pandoc.Space())
            table.insert(inlines, 1, pandoc.Emph({pandoc.Str(headers[i] .. ":")}))
          end
          table.insert(definition, pandoc.Para(inlines))
        end
      end
      table.insert(items, {term, {definition}})
    end
  end
  return pandoc.DefinitionList(items)
end
